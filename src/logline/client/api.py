"""The API's endpoints as operations: spans, receipts, the log, identities, onboarding, jobs.

    >>> api = Api("acme", token="eyJ...")
    >>> alice = Signer.generate("logline-id://person/alice")
    >>> span = api.build_span(alice, "payment.approved", "Approve invoice 42", {"amount": 42})
    >>> request = next(api.append(span, wait="checkpointed"))
    >>> request.path, request.params, request.idempotent
    ('/v1/tenants/acme/spans', (('wait', 'checkpointed'),), True)

Appends of client-signed spans are idempotent: the client chose the span ids. So an append is
retried after a lost response, and if the retry meets 409 Conflict because the first try did
land, the span is fetched and, when it is byte for byte the one sent, its receipt returned.

The tenant's rules decide every append (docs/PROTOCOL.md §14): a rejected span is an
`ApiRuleRejected` carrying the decision, and a span held for approval (HTTP 202) a `SpanHeld`
carrying the hold; neither was logged. Rule sets themselves: `rules.RulesApi`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

from logline.client.errors import ApiError, ApiNotFound, SpanHeld, error_for
from logline.client.jobs import (
    Job,
    JobOptions,
    JobPage,
    JobSpec,
    JobStats,
    StatsPoint,
    jobs_of,
    series_of,
)
from logline.client.models import (
    ApiKeyCreated,
    Appended,
    CheckpointInfo,
    EntryRange,
    IdentityInfo,
    LoggedSpan,
    LogInfo,
    Onboarded,
    Page,
    Proof,
    Wait,
    field,
)
from logline.client.protocol import Operation, Request, Response, ok_json, params
from logline.client.rules import RulesApi
from logline.client.signing import Signer
from logline.errors import ParseError, VerificationError
from logline.ledger.checkpoint import Checkpoint, NoteVerifier
from logline.ledger.receipt import Receipt, verify_receipt
from logline.ledger.span import Span


class QueryFilters(TypedDict, total=False):
    """Filters of `query`; every given one must match. `text`: words that must all be in the
    title. `since`/`until`: span timestamps. `order`: asc (oldest first) or desc."""

    kind: str
    author: str
    status: str
    tags: Sequence[str]
    since: str
    until: str
    text: str
    contract_id: str
    workflow_id: str
    flow_id: str
    caused_by: str
    replay_of: str
    order: str
    limit: int
    cursor: str | None


class Api(RulesApi):
    """Every endpoint of one tenant as an operation; `Client` and `AsyncClient` run them."""

    def _path(self, suffix: str) -> str:
        return f"/v1/tenants/{self.tenant}{suffix}"

    def _get(self, suffix: str, query: tuple[tuple[str, str], ...] = ()) -> Operation[Any]:
        request = Request("GET", self._path(suffix), params=query, idempotent=True)
        return (yield from self.call_json(request))

    # --- spans ------------------------------------------------------------------------------------

    def build_span(
        self, signer: Signer, kind: str, title: str, payload: Any = None, **fields: Any
    ) -> Span:
        """A span for this client's tenant, signed here (fields as in `ledger.span.build_body`)."""
        return signer.span(self.tenant, kind, title, payload, **fields)

    def append(self, span: Span, wait: Wait = "sequenced") -> Operation[Appended]:
        """Append one client-signed span; `wait="checkpointed"` returns a receipt with proof."""
        request = Request(
            "POST", self._path("/spans"), params(wait=wait), span.to_json(), idempotent=True
        )
        [result] = yield from self._appended(request, [span], wait)
        return result

    def append_batch(
        self, spans: Sequence[Span], wait: Wait = "sequenced"
    ) -> Operation[list[Appended]]:
        """Append spans atomically, in order: all are logged, or none (the error says why)."""
        body = {"spans": [span.to_json() for span in spans]}
        request = Request(
            "POST", self._path("/spans/batch"), params(wait=wait), body, idempotent=True
        )
        return (yield from self._appended(request, list(spans), wait, batch=True))

    def _appended(
        self, request: Request, spans: list[Span], wait: Wait, *, batch: bool = False
    ) -> Operation[list[Appended]]:
        response = yield from self.call(request)
        if response.status == 409 and response.attempts > 1:
            return (yield from self._already_logged(spans, wait, response))
        data = appended_json(response)
        items = field(data, "results", list, "batch result") if batch else [data]
        results = [Appended.from_json(item) for item in items]
        if len(results) != len(spans):
            raise ParseError(f"sent {len(spans)} spans, got {len(results)} results")
        for result, span in zip(results, spans, strict=True):
            _check_entry(result.receipt, span)
        return results

    def _already_logged(
        self, spans: list[Span], wait: Wait, conflict: Response
    ) -> Operation[list[Appended]]:
        """After a retried append met 409: the spans' receipts, if the first try logged them."""
        results = []
        for span in spans:
            try:
                logged = yield from self.get_span(span.id)
            except ApiNotFound:
                raise _error(conflict) from None
            if logged.span.hash != span.hash or logged.span.signature != span.signature:
                raise _error(conflict)  # another span with this id: a real conflict
            if wait == "checkpointed":
                receipt = yield from self.receipt(span.id)
            else:
                receipt = Receipt((yield from self.origin()), logged.entry)
            _check_entry(receipt, span)
            results.append(Appended.of(receipt))
        return results

    def append_custodial(
        self, kind: str, title: str, payload: Any = None, wait: Wait = "sequenced", **fields: Any
    ) -> Operation[Appended]:
        """A span the server signs as the caller's custodial identity (not retried after a lost
        response: the server picks its id, so a retry could log it twice)."""
        body = {"kind": kind, "title": title, "payload": payload, **fields}
        request = Request("POST", self._path("/spans/custodial"), params(wait=wait), body)
        return Appended.from_json(appended_json((yield from self.call(request))))

    def get_span(self, span_id: str) -> Operation[LoggedSpan]:
        return LoggedSpan.from_json((yield from self._get(f"/spans/{quote(span_id)}")))

    def receipt(self, span_id: str) -> Operation[Receipt]:
        """A checkpointed receipt for a logged span, against the latest checkpoint."""
        return Receipt.from_json((yield from self._get(f"/spans/{quote(span_id)}/receipt")))

    def query(self, **filters: Unpack[QueryFilters]) -> Operation[Page]:
        """One page of spans matching every filter; pass `next_cursor` back as `cursor`."""
        names = {"text": "q", "tags": "tag"}
        query: list[tuple[str, str]] = []
        for name, value in filters.items():
            if value is None:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            query.extend((names.get(name, name), str(item)) for item in values)
        return Page.from_json((yield from self._get("/spans", tuple(query))))

    def _edit(
        self, span_id: str, action: str, wait: Wait, reason: str | None
    ) -> Operation[Appended]:
        body = None if action == "replay" else {"reason": reason}
        path = self._path(f"/spans/{quote(span_id)}/{action}")
        request = Request("POST", path, params(wait=wait), body)
        return Appended.from_json(appended_json((yield from self.call(request))))

    def replay(self, span_id: str, wait: Wait = "sequenced") -> Operation[Appended]:
        return (yield from self._edit(span_id, "replay", wait, None))

    def revert(
        self, span_id: str, reason: str | None = None, wait: Wait = "sequenced"
    ) -> Operation[Appended]:
        return (yield from self._edit(span_id, "revert", wait, reason))

    def redact(
        self, span_id: str, reason: str | None = None, wait: Wait = "sequenced"
    ) -> Operation[Appended]:
        return (yield from self._edit(span_id, "redact", wait, reason))

    # --- the log and receipts ---------------------------------------------------------------------

    def log_info(self) -> Operation[LogInfo]:
        """The log's head; its key is pinned on first use (or checked against the pinned one)."""
        info = LogInfo.from_json((yield from self._get("/log")))
        self.pin(info.key)
        return info

    def verifier(self) -> Operation[NoteVerifier]:
        if self.log_key is None:
            yield from self.log_info()
        assert self.log_key is not None  # log_info pinned it
        return self.log_key

    def origin(self) -> Operation[str]:
        """The tenant's log origin: `<instance>/<tenant>`, the instance naming the log key."""
        return f"{(yield from self.verifier()).name}/{self.tenant}"

    def verify_receipt(self, receipt: Receipt, span: Span | None = None) -> Operation[Checkpoint]:
        """Check a receipt against the pinned log key; with `span`, that it is the span logged.

        A sequenced receipt is upgraded first: the server's checkpointed receipt for the same
        entry is fetched (and must carry the very same entry). Raises `VerificationError`.
        """
        key = yield from self.verifier()
        expected = yield from self.origin()
        if receipt.origin != expected:
            raise VerificationError("receipt origin", expected=expected, found=receipt.origin)
        if receipt.checkpoint is None:
            upgraded = yield from self.receipt(receipt.entry.span_id)
            if upgraded.entry != receipt.entry:
                raise VerificationError(
                    "receipt entry", expected=receipt.entry, found=upgraded.entry
                )
            receipt = upgraded
        return verify_receipt(receipt, key, span)

    def checkpoint(self, size: int | None = None) -> Operation[CheckpointInfo]:
        query = params(size=size)
        return CheckpointInfo.from_json((yield from self._get("/log/checkpoint", query)))

    def inclusion_proof(self, seq: int, size: int | None = None) -> Operation[Proof]:
        query = params(seq=seq, size=size)
        return Proof.from_json((yield from self._get("/log/proofs/inclusion", query)))

    def consistency_proof(self, size1: int, size2: int | None = None) -> Operation[Proof]:
        query = (("from", str(size1)),) + (() if size2 is None else (("to", str(size2)),))
        return Proof.from_json((yield from self._get("/log/proofs/consistency", query)))

    def entries(self, start: int, end: int) -> Operation[EntryRange]:
        return EntryRange.from_json(
            (yield from self._get("/log/entries", params(start=start, end=end)))
        )

    # --- identities, members, keys, onboarding ----------------------------------------------------

    def identities(self) -> Operation[list[IdentityInfo]]:
        items = yield from self._get("/identities")
        if not isinstance(items, list):
            raise ParseError("identities: expected a list")
        return [IdentityInfo.from_json(item) for item in items]

    def identity(self, identity: str) -> Operation[IdentityInfo]:
        return IdentityInfo.from_json((yield from self._get(f"/identities/{identity}")))

    def register_identity(self, span: Span) -> Operation[Appended]:
        """Register an identity with its `identity.created` span, signed by its new key."""
        request = Request("POST", self._path("/identities"), json=span.to_json(), idempotent=True)
        [result] = yield from self._appended(request, [span], "sequenced")
        return result

    def grant(self, identity: str, role: str) -> Operation[None]:
        request = Request("PUT", self._path(f"/members/{identity}"), json={"role": role},
                          idempotent=True)  # fmt: skip
        yield from self.call_json(request)

    def create_api_key(
        self, name: str, role: str = "member", identity: str | None = None
    ) -> Operation[ApiKeyCreated]:
        body = {"name": name, "role": role, "identity": identity}
        request = Request("POST", self._path("/api-keys"), json=body)
        return ApiKeyCreated.from_json((yield from self.call_json(request)))

    def onboard(
        self, identity_span: Span, display_name: str | None = None, first_span: Span | None = None
    ) -> Operation[Onboarded]:
        """Create the identity of `identity_span`, its tenant (the span's) with the identity as
        owner, and log `first_span`. Sends the client's token if it holds one (an instance
        administrator's), else none (instances with open sign-up)."""
        body: dict[str, Any] = {
            "identity_span": identity_span.to_json(),
            "tenant": {"name": identity_span.tenant, "display_name": display_name},
        }
        if first_span is not None:
            body["first_span"] = first_span.to_json()
        request = Request("POST", "/v1/onboard", json=body)
        return Onboarded.from_json((yield from self.call_json(request)))

    # --- jobs -------------------------------------------------------------------------------------

    def submit_job(
        self, type: str, payload: Any = None, **options: Unpack[JobOptions]
    ) -> Operation[Job]:
        """Queue a job (options: `JobOptions`). With a `dedupe_key` already used in the tenant,
        the job that used it, `deduplicated`. Only a submission with a dedupe key is retried
        after a lost response (a retry whose first try landed gets that job back, deduplicated);
        without one, a retry could queue the job twice."""
        spec = JobSpec(type, payload, **options)
        request = Request("POST", self._path("/jobs"), json=spec.to_json(),
                          idempotent=spec.dedupe_key is not None)  # fmt: skip
        return Job.from_json((yield from self.call_json(request)))

    def submit_jobs(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> Operation[list[Job]]:
        """Queue jobs atomically, in order: all are queued (or deduplicated), or none (the error
        says why). Retried after a lost response only when every job has a dedupe key."""
        jobs = [JobSpec.of(spec) for spec in specs]
        body = {"jobs": [job.to_json() for job in jobs]}
        idempotent = bool(jobs) and all(job.dedupe_key is not None for job in jobs)
        request = Request("POST", self._path("/jobs/batch"), json=body, idempotent=idempotent)
        return jobs_of((yield from self.call_json(request)), "job batch")

    def get_job(self, job_id: str) -> Operation[Job]:
        """A job with its `history` of attempts."""
        return Job.from_json((yield from self._get(f"/jobs/{quote(job_id, safe='')}")))

    def jobs(
        self,
        state: str | Sequence[str] | None = None,
        type: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> Operation[JobPage]:
        """One page of jobs, newest first, in any of the states `state` names and of `type` and
        `queue`; pass `next_before` back as `before` for the next page."""
        states = None if state is None else [state] if isinstance(state, str) else list(state)
        query = params(state=states, type=type, queue=queue, limit=limit, before=before)
        return JobPage.from_json((yield from self._get("/jobs", query)))

    def _act_on(self, job_id: str, action: str) -> Operation[Job]:
        request = Request("POST", self._path(f"/jobs/{quote(job_id, safe='')}/{action}"))
        return Job.from_json((yield from self.call_json(request)))

    def cancel_job(self, job_id: str) -> Operation[Job]:
        """Cancel a queued or retrying job now; a running one is asked to stop (its
        `cancel_requested`). A job in any other state is an `ApiConflict`."""
        return (yield from self._act_on(job_id, "cancel"))

    def retry_job(self, job_id: str) -> Operation[Job]:
        """Run a retrying job now, or requeue a dead letter; else an `ApiConflict`."""
        return (yield from self._act_on(job_id, "retry"))

    def dead_letters(
        self,
        type: str | None = None,
        queue: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> Operation[JobPage]:
        """One page of dead letters (jobs dead or failed), newest first."""
        query = params(type=type, queue=queue, limit=limit, before=before)
        return JobPage.from_json((yield from self._get("/dead-letters", query)))

    def _dead_letters(
        self, action: str, type: str | None, queue: str | None, ids: Sequence[str]
    ) -> Operation[Any]:
        body = {"type": type, "queue": queue, "ids": list(ids)}
        request = Request("POST", self._path(f"/dead-letters/{action}"), json=body)
        return (yield from self.call_json(request))

    def requeue_dead_letters(
        self, type: str | None = None, queue: str | None = None, ids: Sequence[str] = ()
    ) -> Operation[list[Job]]:
        """Requeue the dead letters that match every filter given (none: all, up to 1000), each
        with as many attempts as it was first given; the jobs requeued."""
        data = yield from self._dead_letters("requeue", type, queue, ids)
        return list(JobPage.from_json(data).jobs)

    def purge_dead_letters(
        self, type: str | None = None, queue: str | None = None, ids: Sequence[str] = ()
    ) -> Operation[list[str]]:
        """Forget the matching dead letters (their history stays on the log); their ids."""
        data = yield from self._dead_letters("purge", type, queue, ids)
        if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
            raise ParseError("purged dead letters: expected a list of job ids")
        return data

    def register_job_type(self, type: str, schema: Mapping[str, Any]) -> Operation[None]:
        """Register (or replace) the JSON Schema (2020-12) that payloads of `type` must match;
        a payload that does not is refused with an `ApiInvalidInput` saying where and why."""
        request = Request("PUT", self._path(f"/job-types/{quote(type, safe='')}"),
                          json={"schema": dict(schema)}, idempotent=True)  # fmt: skip
        yield from self.call_json(request)

    def job_stats(
        self,
        windows: Sequence[str] = (),
        type: str | None = None,
        queue: str | None = None,
    ) -> Operation[JobStats]:
        """The jobs in total and per type and queue: counts by state, queue depth, and per
        window (1m, 5m, 15m, 1h, 6h, 24h; default 1m, 5m, 1h, 24h) throughput, failure rate and
        wait and run times."""
        query = params(window=list(windows) or None, type=type, queue=queue)
        return JobStats.from_json((yield from self._get("/stats", query)))

    def job_stats_series(
        self, minutes: int | None = None, type: str | None = None, queue: str | None = None
    ) -> Operation[list[StatsPoint]]:
        """One point per minute of the last `minutes` (server default 60), oldest first."""
        query = params(minutes=minutes, type=type, queue=queue)
        return series_of((yield from self._get("/stats/series", query)))


def appended_json(response: Response) -> Any:
    """The JSON of an append's answer; `SpanHeld` for a 202 (held for approval, not logged),
    the `ApiError` of any error (`ApiRuleRejected` when the rules rejected it)."""
    data = ok_json(response)
    if response.status == 202:
        if not isinstance(data, dict) or not isinstance(data.get("hold"), str):
            raise ParseError("a 202 answer to an append must describe the hold")
        raise SpanHeld(data)
    return data


def _check_entry(receipt: Receipt, span: Span) -> None:
    """The server's receipt must be for the span sent: same id, hash and signature."""
    entry = receipt.entry
    if (
        entry.span_id != span.id
        or entry.span_hash != span.hash
        or entry.signature != span.signature
    ):
        raise VerificationError(
            "receipt entry", expected=f"span {span.id} as sent", found=f"span {entry.span_id}"
        )


def _error(response: Response) -> ApiError:
    return error_for(response.status, response.headers, response.content)
