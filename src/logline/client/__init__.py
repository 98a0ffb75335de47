"""The LogLine Python SDK: one sans-IO core, a blocking `Client` and an `AsyncClient`.

    from logline.client import Client, Signer

    alice = Signer.from_keystore(".logline/keystore.json", "logline-id://person/alice")
    with Client("http://127.0.0.1:8470", tenant="acme") as client:
        client.login_with_key(alice.identity, alice.key)          # key challenge → tokens
        appended = client.sign_and_append(alice, "payment.approved", "Approve invoice 42",
                                          {"amount": 42}, wait="checkpointed")
        client.verify_receipt(appended.receipt)   # log key pinned on first use, or log_key=...
        page = client.query(kind="payment.*", limit=50)             # page.next_cursor
        job = client.submit_job("report.render", {"month": "2026-10"}, priority="high")
        for event in client.subscribe(cursor=saved_cursor):         # resumes by itself
            print(event)

Layers, each usable alone:

- `protocol`, `core`, `api`, `stream`: operations (generators of actions) holding all logic —
  requests, retries with backoff (`retry`), token refresh, receipt checks, stream resume;
- `sse`, `models`, `jobs`, `rules`, `errors`: wire formats, typed results, and the `ApiError`
  classes (a span the tenant's rules reject is an `ApiRuleRejected`; one they hold for approval,
  a `SpanHeld`);
- `sync` and `aio`: the transports, carrying out actions with httpx.
"""

from logline.client.aio import AsyncClient, AsyncSubscription
from logline.client.core import RetryNotice
from logline.client.errors import (
    ApiConflict,
    ApiError,
    ApiForbidden,
    ApiInvalidInput,
    ApiInvalidSpan,
    ApiNotFound,
    ApiRateLimited,
    ApiRuleRejected,
    ApiServerError,
    ApiUnauthenticated,
    ApiUnknownAuthor,
    ConnectionFailed,
    SpanHeld,
)
from logline.client.jobs import (
    Job,
    JobAttempt,
    JobPage,
    JobSpec,
    JobStats,
    JobStatsGroup,
    StatsPoint,
    Timing,
    WindowStats,
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
    TokenSet,
    WhoAmI,
)
from logline.client.retry import NO_RETRY, RetryPolicy
from logline.client.rules import DryRun, RuleSetInfo, RuleState, RulesTest
from logline.client.signing import Signer
from logline.client.sse import Cursor, DroppedEvent, HeartbeatEvent, LiveEvent, SpanEvent
from logline.client.sync import Client, Subscription

__all__ = [
    "NO_RETRY",
    "ApiConflict",
    "ApiError",
    "ApiForbidden",
    "ApiInvalidInput",
    "ApiInvalidSpan",
    "ApiKeyCreated",
    "ApiNotFound",
    "ApiRateLimited",
    "ApiRuleRejected",
    "ApiServerError",
    "ApiUnauthenticated",
    "ApiUnknownAuthor",
    "Appended",
    "AsyncClient",
    "AsyncSubscription",
    "CheckpointInfo",
    "Client",
    "ConnectionFailed",
    "Cursor",
    "DroppedEvent",
    "DryRun",
    "EntryRange",
    "HeartbeatEvent",
    "IdentityInfo",
    "Job",
    "JobAttempt",
    "JobPage",
    "JobSpec",
    "JobStats",
    "JobStatsGroup",
    "LiveEvent",
    "LogInfo",
    "LoggedSpan",
    "Onboarded",
    "Page",
    "Proof",
    "RetryNotice",
    "RetryPolicy",
    "RuleSetInfo",
    "RuleState",
    "RulesTest",
    "Signer",
    "SpanEvent",
    "SpanHeld",
    "StatsPoint",
    "Subscription",
    "Timing",
    "TokenSet",
    "WhoAmI",
    "WindowStats",
]
