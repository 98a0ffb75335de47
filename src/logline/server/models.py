"""Request and response bodies of the API, as Pydantic models (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Wait = Literal["sequenced", "checkpointed"]
JsonValue = Any


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- spans ----------------------------------------------------------------------------------------


class WireSpan(Strict):
    """A signed span in wire form (docs/PROTOCOL.md §2.4)."""

    body: dict[str, JsonValue]
    signature: str
    payload: JsonValue = Field(default=None, json_schema_extra={"nullable": True})


class SpanBatch(Strict):
    spans: list[WireSpan] = Field(min_length=1, max_length=1000)


class Draft(Strict):
    """A span for the server to sign as the caller's custodial identity."""

    kind: str
    title: str
    payload: JsonValue = None
    status: Literal["executed", "simulated", "ghost"] = "executed"
    tags: list[str] = Field(default_factory=list)
    caused_by: str | None = None
    contract_id: str | None = None
    workflow_id: str | None = None
    flow_id: str | None = None
    visibility: Literal["private", "organization", "public"] = "organization"


class Reason(Strict):
    reason: str | None = None


class ReceiptOut(BaseModel):
    """A receipt (docs/PROTOCOL.md §6): verifies offline with the log's public key."""

    v: int
    status: Wait
    origin: str
    entry: dict[str, JsonValue]
    checkpoint: str | None = None
    inclusion: list[str] | None = None


class Appended(BaseModel):
    span_id: str
    seq: int
    status: Wait
    receipt: ReceiptOut


class AppendedBatch(BaseModel):
    results: list[Appended]


class StoredSpanOut(BaseModel):
    """A logged span: its entry, the span in wire form, and the log's marks on it."""

    seq: int
    entry: dict[str, JsonValue]
    span: dict[str, JsonValue]
    reverted_by: str | None = None
    redacted_by: str | None = None


class SpanPage(BaseModel):
    items: list[StoredSpanOut]
    next_cursor: str | None


# --- log ------------------------------------------------------------------------------------------


class LogInfo(BaseModel):
    tenant: str
    origin: str
    size: int
    key: str  # the note verifier key (docs/PROTOCOL.md §5)
    checkpoint: str | None


class CheckpointOut(BaseModel):
    size: int
    root: str
    checkpoint: str
    created_at: str


class ProofOut(BaseModel):
    size: int
    proof: list[str]
    index: int | None = None
    size1: int | None = None
    root: str


class EntryRange(BaseModel):
    start: int
    end: int
    items: list[StoredSpanOut]


# --- identities -----------------------------------------------------------------------------------


class IdentityOut(BaseModel):
    id: str
    kind: str
    public_key: str
    status: str
    tenant: str
    created_at: str
    display_name: str | None
    expires_at: str | None
    claimed_by: str | None
    custodial: bool


class KeyOut(BaseModel):
    public_key: str
    valid_from: str
    valid_until: str | None
    span_id: str


class IdentityDetail(IdentityOut):
    keys: list[KeyOut]


class GhostIn(Strict):
    handle: str
    display_name: str | None = None
    expires_in_s: int = Field(7 * 86_400, ge=60, le=365 * 86_400)


class ClaimProof(BaseModel):
    ghost: str
    claimant: str
    proof: str


# --- accounts -------------------------------------------------------------------------------------


class TenantIn(Strict):
    name: str
    display_name: str | None = None


class TenantOut(BaseModel):
    name: str
    display_name: str
    created_at: str
    created_by: str
    role: str | None = None


class MemberIn(Strict):
    role: str


class MemberOut(BaseModel):
    tenant: str
    identity: str
    role: str
    granted_at: str
    granted_by: str


class UserIn(Strict):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}[a-z0-9]$|^[a-z0-9]$")
    password: str = Field(min_length=12, max_length=1024)
    display_name: str | None = None
    tenant: str
    role: str = "member"
    instance_admin: bool = False


class UserOut(BaseModel):
    username: str
    identity: str
    instance_admin: bool
    created_at: str


class ApiKeyIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: str = "member"
    identity: str | None = None  # default: a new custodial service identity
    expires_in_s: int | None = Field(None, ge=60, le=10 * 365 * 86_400)


class ApiKeyOut(BaseModel):
    id: str
    tenant: str
    identity: str
    role: str
    name: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str  # shown once


# --- auth -----------------------------------------------------------------------------------------


class PasswordLogin(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    tenants: list[str] = Field(min_length=1, max_length=16)


class ChallengeIn(Strict):
    identity: str
    tenants: list[str] = Field(min_length=1, max_length=16)


class ChallengeOut(BaseModel):
    nonce: str
    message: str  # base64 of the exact bytes to sign
    expires_at: str


class KeyLogin(Strict):
    nonce: str
    signature: str


class RefreshIn(Strict):
    refresh_token: str


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    identity: str
    tenants: list[str]


class WhoAmI(BaseModel):
    identity: str
    tenants: list[str]
    method: str
    instance_admin: bool
    roles: dict[str, str | None]


class OnboardIn(Strict):
    """identity → tenant → membership → (token, by logging in) → first span."""

    identity_span: WireSpan
    tenant: TenantIn
    first_span: WireSpan | None = None


class OnboardOut(BaseModel):
    identity: str
    tenant: str
    role: str
    spans: list[str]


class ProblemOut(BaseModel):
    """An RFC 9457 problem (docs/PROTOCOL.md §11.1)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    errors: list[dict[str, JsonValue]] | None = None
    retry_after: int | None = None
    # invalid-rules: where in the rule set document (docs/RULES.md §8)
    location: str | None = None
    line: int | None = None
    column: int | None = None
    failures: list[dict[str, JsonValue]] | None = None  # examples-failed
    span_id: str | None = None  # rejected-by-rule: the span, and the decision that rejected it
    decision: dict[str, JsonValue] | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
