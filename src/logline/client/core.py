"""The SDK's transport-independent state: credentials, retries, refresh and the pinned log key.

    >>> core = Core("acme", token="eyJ...")
    >>> op = core.whoami()
    >>> request = next(op)                     # what a transport would send
    >>> request.method, request.path, request.headers["Authorization"]
    ('GET', '/v1/auth/whoami', 'Bearer eyJ...')
    >>> op.close()

`Core.call` is the one place a request is sent (see `protocol` for operations). It attaches the
credentials, retries under a `RetryPolicy`, and on a 401 with a refresh token in hand refreshes
once and sends the request again. Refresh tokens rotate and a reused one revokes the session, so
two operations that meet a 401 together refresh once: the second waits for the first and uses its
tokens.

Receipts are verified against the log key: pinned by the caller (`log_key=`), or trusted on first
use, from the first `GET /log` this client makes; a later answer with another key is refused.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from logline.client.errors import (
    ApiRateLimited,
    ApiUnauthenticated,
    ConnectionFailed,
    error_for,
)
from logline.client.models import Challenge, TokenSet, WhoAmI
from logline.client.protocol import Operation, Request, Response, Sleep, expect_response, ok_json
from logline.client.retry import RetryPolicy
from logline.errors import VerificationError
from logline.identity.ids import check_tenant
from logline.identity.keys import PrivateKey
from logline.ledger.checkpoint import NoteVerifier

REFRESH_WAIT_S = 0.05
REFRESH_WAIT_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """Passed to `on_retry` before each wait: which request, which try failed, and why."""

    method: str
    path: str
    attempt: int  # 1 for the first try
    delay_s: float
    reason: str  # "HTTP 429", "connection: ..."


class Core:
    """Credentials, retry policy and pinned log key of one client; no I/O of its own."""

    def __init__(
        self,
        tenant: str = "default",
        *,
        token: str | None = None,
        refresh_token: str | None = None,
        api_key: str | None = None,
        log_key: NoteVerifier | str | None = None,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.tenant = check_tenant(tenant)
        self.access_token = token
        self.refresh_token = refresh_token
        self.api_key = api_key
        self.principal: str | None = None  # the identity logged in as, once known
        self.log_key = NoteVerifier.parse(log_key) if isinstance(log_key, str) else log_key
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.rng = rng or random.Random()
        self._refreshing = False

    # --- sending ----------------------------------------------------------------------------------

    def authorization(self) -> str | None:
        credential = self.access_token or self.api_key
        return None if credential is None else f"Bearer {credential}"

    def call(self, request: Request, policy: RetryPolicy | None = None) -> Operation[Response]:
        """Send `request` until it gets an answer worth returning (any status), or raise
        `ConnectionFailed` once the policy gives up on reaching the server."""
        policy = policy or self.retry
        attempt = 0
        refreshed = False
        while True:
            sent_token = self.access_token if request.auth else None
            try:
                response = expect_response((yield self._authorized(request)))
            except ConnectionFailed as exc:
                delay = policy.decide(
                    attempt=attempt, idempotent=request.idempotent, sent=exc.sent, rng=self.rng
                )
                if delay is None:
                    raise
                yield from self._wait(request, attempt, delay, f"connection: {exc}")
                attempt += 1
                continue
            if (
                response.status == 401
                and sent_token is not None
                and self.refresh_token is not None
                and not refreshed
            ):
                refreshed = True  # once: a second 401 is the answer
                yield from self._refresh_after(sent_token)
                continue
            delay = policy.decide(
                attempt=attempt,
                idempotent=request.idempotent,
                status=response.status,
                retry_after=_retry_after(response),
                rng=self.rng,
            )
            if delay is None:
                return replace(response, attempts=attempt + 1)
            yield from self._wait(request, attempt, delay, f"HTTP {response.status}")
            attempt += 1

    def call_json(self, request: Request) -> Operation[object]:
        """`call`, then the JSON of a 2xx response or the `ApiError` of any other."""
        response = yield from self.call(request)
        return ok_json(response)

    def _authorized(self, request: Request) -> Request:
        header = self.authorization() if request.auth else None
        if header is None:
            return request
        return replace(request, headers={**request.headers, "Authorization": header})

    def _wait(self, request: Request, attempt: int, delay: float, reason: str) -> Operation[None]:
        if self.on_retry is not None:
            self.on_retry(RetryNotice(request.method, request.path, attempt + 1, delay, reason))
        yield Sleep(delay)

    # --- logging in -------------------------------------------------------------------------------

    def use(self, tokens: TokenSet) -> TokenSet:
        """Make `tokens` this client's credentials."""
        self.access_token, self.refresh_token = tokens.access_token, tokens.refresh_token
        self.principal = tokens.identity
        return tokens

    def _tenants(self, tenants: Sequence[str] | None) -> list[str]:
        return list(tenants) if tenants else [self.tenant]

    def login(
        self, username: str, password: str, tenants: Sequence[str] | None = None
    ) -> Operation[TokenSet]:
        """Log in with a password; the tokens are bound to `tenants` (default: the client's)."""
        body = {"username": username, "password": password, "tenants": self._tenants(tenants)}
        # Retrying a lost login at worst opens a second session, which expires unused.
        request = Request("POST", "/v1/auth/login", json=body, auth=False, idempotent=True)
        return self.use(TokenSet.from_json((yield from self.call_json(request))))

    def challenge(
        self, identity: str, tenants: Sequence[str] | None = None
    ) -> Operation[Challenge]:
        body = {"identity": identity, "tenants": self._tenants(tenants)}
        request = Request("POST", "/v1/auth/challenge", json=body, auth=False, idempotent=True)
        return Challenge.from_json((yield from self.call_json(request)))

    def login_with_key(
        self, identity: str, key: PrivateKey, tenants: Sequence[str] | None = None
    ) -> Operation[TokenSet]:
        """Key-challenge login: sign the server's challenge with the identity's current key."""
        challenge = yield from self.challenge(identity, tenants)
        signature = base64.b64encode(key.sign(challenge.message)).decode()
        body = {"nonce": challenge.nonce, "signature": signature}
        # Not idempotent: the first try used up the nonce.
        request = Request("POST", "/v1/auth/key-login", json=body, auth=False)
        return self.use(TokenSet.from_json((yield from self.call_json(request))))

    def refresh(self) -> Operation[TokenSet]:
        """Exchange the refresh token for new tokens (the old refresh token is used up)."""
        if self.refresh_token is None:
            raise ApiUnauthenticated(401, {"detail": "no refresh token; log in first"})
        self._refreshing = True
        try:
            # Not idempotent: a retry after a lost answer would present a used token, and the
            # server would revoke the whole session.
            request = Request(
                "POST", "/v1/auth/refresh", json={"refresh_token": self.refresh_token}, auth=False
            )
            try:
                data = yield from self.call_json(request)
            except ApiUnauthenticated:
                self.access_token = self.refresh_token = None  # the session is gone
                raise
            return self.use(TokenSet.from_json(data))
        finally:
            self._refreshing = False

    def _refresh_after(self, stale: str) -> Operation[None]:
        waited = 0.0
        while self._refreshing and waited < REFRESH_WAIT_MAX_S:
            yield Sleep(REFRESH_WAIT_S)
            waited += REFRESH_WAIT_S
        if self.access_token == stale:  # nobody refreshed meanwhile
            yield from self.refresh()

    def logout(self) -> Operation[None]:
        """Revoke the session (tokens) and forget the credentials."""
        if self.access_token is not None:
            yield from self.call_json(Request("POST", "/v1/auth/logout"))
        self.access_token = self.refresh_token = self.principal = None

    def whoami(self) -> Operation[WhoAmI]:
        request = Request("GET", "/v1/auth/whoami", idempotent=True)
        return WhoAmI.from_json((yield from self.call_json(request)))

    # --- the log key ------------------------------------------------------------------------------

    def pin(self, key: NoteVerifier) -> None:
        """Trust `key` on first use; refuse any other key once one is pinned."""
        if self.log_key is None:
            self.log_key = key
        elif key != self.log_key:
            raise VerificationError("log key", expected=str(self.log_key), found=str(key))


def _retry_after(response: Response) -> int:
    if response.status != 429:
        return 0
    error = error_for(response.status, response.headers, response.content)
    return error.retry_after if isinstance(error, ApiRateLimited) else 0
