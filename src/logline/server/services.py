"""Everything a server process holds, built once per process from the instance and settings.

    services = Services(Instance.open(home), load_settings(config))
    services.start()                           # the instance identity and the `system` log
    services.record("acme", "tenant.created", "Tenant acme created", {...})

The server speaks on the logs as the *instance identity*, `logline-id://service/<instance>`, a
custodial identity registered on the reserved `system` tenant's log. Onboarding steps and security
events are spans it signs; whoever verifies a log can tell them from what users wrote by author.
"""

from __future__ import annotations

import asyncio
from typing import Any

from logline import __version__
from logline.engine.nodes import Nodes
from logline.engine.queue import JobQueue
from logline.engine.schedules import Schedules
from logline.errors import Conflict, NotFound, UnknownAuthor
from logline.identity import documents
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.instance import Instance
from logline.ledger.log import Wait
from logline.ledger.receipt import Receipt
from logline.ledger.span import Span, new_span
from logline.ledger.timefmt import now_ts
from logline.observe.job_metrics import JobMetrics
from logline.observe.metrics import Metrics
from logline.observe.node_metrics import NodeMetrics
from logline.rules.gate import RulesGate
from logline.rules.holds import Holds
from logline.rules.outbox import Dispatcher
from logline.rules.sets import RuleSets
from logline.rules.webhooks import WebhookAllowList
from logline.server.custody import Custody
from logline.server.feed import Feed
from logline.server.ratelimit import RateLimiter
from logline.server.roles import ROLES, rank
from logline.server.settings import ServerSettings
from logline.server.tokens import Tokens
from logline.store.accounts import Accounts, Tenant
from logline.store.sql import Connection

SYSTEM_TENANT = "system"


class Services:
    def __init__(self, instance: Instance, settings: ServerSettings) -> None:
        self.instance = instance
        self.settings = settings
        self.log = instance.log
        self.store = instance.store
        self.accounts = Accounts(instance.store)
        self.custody = Custody(instance.key, self.accounts)
        self.tokens = Tokens(
            instance.key, issuer=instance.config.instance, access_ttl_s=settings.access_token_ttl_s
        )
        self.limiter = RateLimiter(
            settings.rate_limit_storage,
            limits=settings.rate_limits,
            key_prefix=settings.rate_limit_prefix,
        )
        self.metrics = Metrics(version=__version__)
        self.feed = Feed(instance.store, poll_s=settings.stream_poll_s)
        self.log.listeners.append(self.feed.committed)
        self.system_identity = f"logline-id://service/{instance.config.instance}"
        self._system_key: PrivateKey | None = None
        self._jobs: JobQueue | None = None
        self._schedules: Schedules | None = None
        self._nodes: Nodes | None = None
        self._rules: RuleSets | None = None
        self._outbox: Dispatcher | None = None
        self._approvals: Holds | None = None
        # Set (from any thread, through the loop) when jobs become claimable: wakes claims
        # that are waiting in this process.
        self.jobs_ready = asyncio.Event()

    @property
    def name(self) -> str:
        return self.instance.config.instance

    def start(self) -> None:
        """Make sure the instance identity exists; idempotent, and safe with racing processes."""
        key = self.custody.create(self.system_identity)  # the first process's key wins
        if self.store.identity(self.system_identity) is None:
            span = documents.creation_span(
                key, SYSTEM_TENANT, LogLineId.parse(self.system_identity), f"Instance {self.name}"
            )
            try:
                self.log.append(span, wait="sequenced")
            except Conflict:
                pass  # another process registered it first, with the same stored key
        self._system_key = key
        self._jobs = JobQueue(self.log, author=self.system_identity, key=key)
        self._schedules = Schedules(self._jobs)
        self._nodes = Nodes(self.log, author=self.system_identity, key=key)
        self._rules = RuleSets(
            self.log,
            author=self.system_identity,
            key=key,
            webhooks=WebhookAllowList(self.settings.rules_webhooks),
        )
        self.log.gate = RulesGate(
            self._rules,
            roles_of,
            author=self.system_identity,
            key=key,
            max_depth=self.settings.rules_max_depth,
        )
        self._outbox = Dispatcher(
            self.log,
            self._jobs,
            author=self.system_identity,
            key=key,
            webhooks=WebhookAllowList(self.settings.rules_webhooks),
        )
        self._approvals = Holds(
            self.log,
            author=self.system_identity,
            key=key,
            max_depth=self.settings.rules_max_depth,
        )
        self.metrics.registry.register(JobMetrics(self._jobs.stats))
        self.metrics.registry.register(NodeMetrics(self._nodes))
        self.ensure_tenant(SYSTEM_TENANT, "Instance-level records", by=self.system_identity)

    def close(self) -> None:
        self.log.listeners.remove(self.feed.committed)
        if self._outbox is not None:
            self._outbox.close()
        self.instance.close()

    # --- writing as the instance or as a custodial identity ---------------------------------------

    @property
    def jobs(self) -> JobQueue:
        """The job queue; its transitions are signed by the instance identity."""
        if self._jobs is None:
            raise RuntimeError("Services.start() has not run")
        return self._jobs

    @property
    def nodes(self) -> Nodes:
        """The worker node registry; its state changes are signed by the instance identity."""
        if self._nodes is None:
            raise RuntimeError("Services.start() has not run")
        return self._nodes

    @property
    def rules(self) -> RuleSets:
        """The tenants' rule sets; the log's gate applies the active ones."""
        if self._rules is None:
            raise RuntimeError("Services.start() has not run")
        return self._rules

    @property
    def outbox(self) -> Dispatcher:
        """Runs the follow-ups (emit, enqueue, webhook) the rules queued."""
        if self._outbox is None:
            raise RuntimeError("Services.start() has not run")
        return self._outbox

    @property
    def approvals(self) -> Holds:
        """Spans the rules held for approval, and the votes on them."""
        if self._approvals is None:
            raise RuntimeError("Services.start() has not run")
        return self._approvals

    @property
    def schedules(self) -> Schedules:
        """Cron and interval schedules; the jobs they queue go through `jobs`."""
        if self._schedules is None:
            raise RuntimeError("Services.start() has not run")
        return self._schedules

    def system_key(self) -> PrivateKey:
        if self._system_key is None:
            raise RuntimeError("Services.start() has not run")
        return self._system_key

    def record(
        self,
        tenant: str,
        kind: str,
        title: str,
        payload: dict[str, Any] | None = None,
        *,
        wait: Wait = "sequenced",
        **fields: Any,
    ) -> Receipt:
        """Log a span authored and signed by the instance identity."""
        span = new_span(
            self.system_key(),
            tenant=tenant,
            author=self.system_identity,
            kind=kind,
            title=title,
            payload=payload,
            **fields,
        )
        return self.log.append(span, wait=wait)

    def custodial_key(self, identity: str) -> PrivateKey:
        key = None if identity == self.system_identity else self.custody.key(identity)
        if key is None:
            raise Conflict(
                f"the server holds no key for {identity}; sign the span yourself and post it"
            )
        return key

    def sign_as(self, identity: str, **fields: Any) -> Span:
        return new_span(self.custodial_key(identity), author=identity, **fields)

    def create_custodial_identity(
        self, tenant: str, identity: LogLineId, display_name: str | None, **extra: Any
    ) -> Receipt:
        """Create `identity` with a key the server keeps, registered on `tenant`'s log."""
        if self.store.identity(str(identity)) is not None:
            raise Conflict(f"identity {identity} already exists")
        key = self.custody.create(str(identity))
        span = documents.creation_span(key, tenant, identity, display_name, **extra)
        return self.log.append(span, wait="sequenced")

    # --- tenants ----------------------------------------------------------------------------------

    def ensure_tenant(self, name: str, display_name: str, *, by: str) -> bool:
        """Create the tenant and log `tenant.created` on its own log; False if it existed."""
        tenant = Tenant(name, display_name, now_ts(), by)
        if not self.accounts.create_tenant(tenant):
            return False
        self.tenant_created(tenant)
        return True

    def tenant_created(self, tenant: Tenant) -> None:
        """Log `tenant.created` on the tenant's own log."""
        payload = {
            "tenant": tenant.name,
            "display_name": tenant.display_name,
            "created_by": tenant.created_by,
        }
        self.record(tenant.name, "tenant.created", f"Tenant {tenant.name} created", payload)

    def require_tenant(self, name: str) -> Tenant:
        tenant = self.accounts.tenant(name)
        if tenant is None:
            raise NotFound(f"tenant {name} does not exist")
        return tenant

    def require_identity(self, identity: str) -> None:
        if self.store.identity(identity) is None:
            raise UnknownAuthor(f"{identity} is not a registered identity")


def roles_of(c: Connection, tenant: str, identity: str) -> tuple[str, ...]:
    """The roles rules see for `identity` in `tenant`: its membership's and every role below."""
    row = c.one("select_membership", {"tenant": tenant, "identity": identity})
    if row is None:
        return ()
    role = str(row[2])
    return ROLES[: rank(role) + 1] if role in ROLES else (role,)
