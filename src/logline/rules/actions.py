"""Actions: the `then` list of a rule, compiled once; `apply` adds their effect to a decision.

    then:
      - reject: "amount ${payload.amount} is over the limit"
      - add_tag: [finance, over-limit]
      - set_metadata: {risk: high, amount: "${payload.amount}"}
      - require_approval: {approvers: [finance], quorum: 2, timeout: 24h}
      - emit: {kind: alert.raised, title: "Large payment ${span.id}"}

Each action is a one-key mapping, `{name: arguments}`; `allow` and `simulate`, whose arguments are
all optional, may also be written as a bare name. Texts and payloads are templates (paths.py),
rendered when the rule matches. docs/RULES.md §4 gives each action's arguments.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from logline.engine.jobs import PRIORITIES, check_queue
from logline.errors import InvalidIdentifier, InvalidInput
from logline.identity.ids import PREFIX, LogLineId, check_kind, check_tag
from logline.ledger.span import DEFAULT_LIMITS
from logline.rules.approvals import ApprovalGroup
from logline.rules.context import Facts
from logline.rules.decision import DecisionBuilder
from logline.rules.followups import CallWebhook, EmitSpan, EnqueueJob
from logline.rules.paths import JsonTemplate, Template, TemplateError
from logline.rules.source import At, unknown
from logline.rules.webhooks import WebhookAllowList, check_url

ACTIONS = (
    "allow", "reject", "simulate", "add_tag", "set_metadata", "note", "require_approval",
    "enqueue", "emit", "webhook",
)  # fmt: skip
BARE = ("allow", "simulate")  # actions that may be written as a bare name
# Kinds only LogLine itself writes (ledger.admission.RESERVED_PREFIXES; a test keeps them equal).
RESERVED_PREFIXES = ("identity.", "logline.")
MAX_TEXT_CHARS = 2000  # a rendered reason or note is cut here
MAX_TAGS = 32
DEFAULT_APPROVAL_TIMEOUT_S = 86_400
MAX_APPROVAL_TIMEOUT_S = 90 * 86_400
_ROLE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_METADATA_KEY = re.compile(r"[a-z0-9_][a-z0-9_.:/-]{0,63}")


class Action(ABC):
    __slots__ = ()
    name: ClassVar[str]

    @abstractmethod
    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None: ...

    @abstractmethod
    def arguments(self) -> dict[str, Any]:
        """The normalized arguments."""

    def to_json(self) -> dict[str, Any]:
        return {self.name: self.arguments()}


def _text(template: Template, facts: Facts) -> str:
    return template.render_text(facts.roots)[:MAX_TEXT_CHARS]


@dataclass(frozen=True, slots=True)
class Allow(Action):
    reason: Template | None = None
    name: ClassVar[str] = "allow"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        out.allow(rule, None if self.reason is None else _text(self.reason, facts))

    def arguments(self) -> dict[str, Any]:
        return {} if self.reason is None else {"reason": self.reason.text}


@dataclass(frozen=True, slots=True)
class Reject(Action):
    reason: Template
    name: ClassVar[str] = "reject"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        out.reject(rule, _text(self.reason, facts) or f"rejected by rule {rule}")

    def arguments(self) -> dict[str, Any]:
        return {"reason": self.reason.text}


@dataclass(frozen=True, slots=True)
class Simulate(Action):
    note: Template | None = None
    name: ClassVar[str] = "simulate"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        text = None if self.note is None else _text(self.note, facts)
        out.simulate(rule, text or f"simulated by rule {rule}")

    def arguments(self) -> dict[str, Any]:
        return {} if self.note is None else {"note": self.note.text}


@dataclass(frozen=True, slots=True)
class AddTag(Action):
    tags: tuple[str, ...]
    name: ClassVar[str] = "add_tag"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        out.add_tags(self.tags)

    def arguments(self) -> dict[str, Any]:
        return {"tags": list(self.tags)}


@dataclass(frozen=True, slots=True)
class SetMetadata(Action):
    values: tuple[tuple[str, JsonTemplate], ...]
    name: ClassVar[str] = "set_metadata"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        for key, template in self.values:
            out.set_metadata(key, template.render(facts.roots))

    def arguments(self) -> dict[str, Any]:
        return {key: template.source for key, template in self.values}


@dataclass(frozen=True, slots=True)
class AddNote(Action):
    text: Template
    name: ClassVar[str] = "note"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        out.note(rule, _text(self.text, facts))

    def arguments(self) -> dict[str, Any]:
        return {"text": self.text.text}


@dataclass(frozen=True, slots=True)
class RequireApproval(Action):
    group: ApprovalGroup
    timeout_s: int
    reason: Template | None = None
    name: ClassVar[str] = "require_approval"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        text = None if self.reason is None else _text(self.reason, facts)
        out.require_approval(
            rule, self.group, self.timeout_s, text or f"rule {rule} requires approval"
        )

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "approvers": {
                "roles": list(self.group.roles),
                "identities": list(self.group.identities),
            },
            "quorum": self.group.quorum,
            "timeout": self.timeout_s,
            "separation_of_duties": self.group.separation_of_duties,
        }
        if self.reason is not None:
            args["reason"] = self.reason.text
        return args


@dataclass(frozen=True, slots=True)
class Enqueue(Action):
    job: str
    payload: JsonTemplate
    queue: str | None = None
    priority: str | None = None
    dedupe_key: Template | None = None
    name: ClassVar[str] = "enqueue"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        key = None if self.dedupe_key is None else self.dedupe_key.render_text(facts.roots)[:200]
        out.follow_up(
            EnqueueJob(
                rule,
                self.job,
                self.payload.render(facts.roots),
                self.queue,
                self.priority,
                key or None,
            )
        )

    def arguments(self) -> dict[str, Any]:
        return {
            "job": self.job, "payload": self.payload.source, "queue": self.queue,
            "priority": self.priority,
            "dedupe_key": None if self.dedupe_key is None else self.dedupe_key.text,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Emit(Action):
    kind: str
    title: Template
    payload: JsonTemplate
    tags: tuple[str, ...] = ()
    name: ClassVar[str] = "emit"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        title = self.title.render_text(facts.roots).strip() or self.kind
        trigger = facts.roots["span"].get("id")
        out.follow_up(
            EmitSpan(
                rule,
                self.kind,
                title[: DEFAULT_LIMITS.max_title_chars],
                self.payload.render(facts.roots),
                self.tags,
                trigger if isinstance(trigger, str) else None,
            )
        )

    def arguments(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "title": self.title.text, "payload": self.payload.source,
            "tags": list(self.tags),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Webhook(Action):
    url: str
    body: JsonTemplate | None = None
    name: ClassVar[str] = "webhook"

    def apply(self, facts: Facts, out: DecisionBuilder, rule: str) -> None:
        if self.body is None:
            body: Any = {"rule": rule, "span": facts.roots["span"]}
        else:
            body = self.body.render(facts.roots)
        out.follow_up(CallWebhook(rule, self.url, body))

    def arguments(self) -> dict[str, Any]:
        return {"url": self.url, "body": None if self.body is None else self.body.source}


# Compiling


def compile_action(at: At, webhooks: WebhookAllowList) -> Action:
    if isinstance(at.value, str):
        if at.value in BARE:
            return _COMPILERS[at.value](At(at.doc, at.path, None), webhooks)
        if at.value in ACTIONS:
            raise at.error(f"{at.value} needs arguments: write {{{at.value}: ...}}")
        raise at.error(unknown("action", at.value, ACTIONS))
    if not isinstance(at.value, Mapping) or len(at.value) != 1:
        keys = ", ".join(map(str, at.value)) if isinstance(at.value, Mapping) else ""
        extra = f"; got keys {keys} (check the indentation of its arguments)" if keys else ""
        raise at.error(f"an action is a one-key mapping {{name: arguments}}{extra}")
    ((name, _),) = at.value.items()
    if name not in _COMPILERS:
        raise at.child(name).error(unknown("action", name, ACTIONS))
    return _COMPILERS[name](at.child(name), webhooks)


def _template(at: At, *, limit: int = 1000) -> Template:
    text = at.string(limit=limit)  # its own RuleError names the place already
    try:
        return Template.parse(text)
    except InvalidInput as exc:
        raise at.error(str(exc)) from exc


def _json_template(at: At) -> JsonTemplate:
    try:
        return JsonTemplate.parse(at.json())
    except TemplateError as exc:
        raise at.error(f"at {exc.where or 'the top'}: {exc}") from exc


def _args(at: At, shorthand: str | None, **keys: bool) -> dict[str, At]:
    """Arguments as a mapping; a string stands for the `shorthand` argument; None for none."""
    if at.value is None and not any(keys.values()):
        return {}
    if shorthand is not None and at.value is not None and not isinstance(at.value, Mapping):
        return {shorthand: at}  # checked as a string by the caller
    required = [key for key, needed in keys.items() if needed]
    optional = [key for key, needed in keys.items() if not needed]
    return at.mapping(required=required, optional=optional, what="argument")


def _allow(at: At, webhooks: WebhookAllowList) -> Action:
    args = _args(at, "reason", reason=False)
    return Allow(_template(args["reason"]) if "reason" in args else None)


def _reject(at: At, webhooks: WebhookAllowList) -> Action:
    return Reject(_template(_args(at, "reason", reason=True)["reason"]))


def _simulate(at: At, webhooks: WebhookAllowList) -> Action:
    args = _args(at, "note", note=False)
    return Simulate(_template(args["note"]) if "note" in args else None)


def _note(at: At, webhooks: WebhookAllowList) -> Action:
    return AddNote(_template(_args(at, "text", text=True)["text"]))


def _add_tag(at: At, webhooks: WebhookAllowList) -> Action:
    return AddTag(_tags(at))


def _tags(at: At, *, nonempty: bool = True) -> tuple[str, ...]:
    """One tag, a list of tags, or `{tags: [...]}`; sorted and without duplicates."""
    if isinstance(at.value, Mapping):
        at = at.mapping(required=("tags",), what="argument")["tags"]
    items = at.list(nonempty=nonempty, limit=MAX_TAGS) if isinstance(at.value, list) else [at]
    tags = []
    for item in items:
        try:
            tags.append(check_tag(item.string()))
        except InvalidIdentifier as exc:
            raise item.error(str(exc)) from exc
    return tuple(sorted(set(tags)))


def _set_metadata(at: At, webhooks: WebhookAllowList) -> Action:
    items = at.items()
    if not items:
        raise at.error("set_metadata needs at least one key")
    values = []
    for key, value in items:
        if not _METADATA_KEY.fullmatch(key):
            raise value.error(
                "a metadata key is 1-64 of a-z, 0-9 and '_.:/-', starting with a-z0-9"
            )
        values.append((key, _json_template(value)))
    return SetMetadata(tuple(values))


def _require_approval(at: At, webhooks: WebhookAllowList) -> Action:
    args = _args(
        at, None, approvers=True, quorum=False, timeout=False, separation_of_duties=False,
        reason=False,
    )  # fmt: skip
    roles, identities = _approvers(args["approvers"])
    quorum = args["quorum"].integer(minimum=1, maximum=100) if "quorum" in args else 1
    if not roles and quorum > len(identities):
        raise args["quorum"].error(
            f"quorum {quorum} can never be reached by {len(identities)} named identities"
        )
    timeout = DEFAULT_APPROVAL_TIMEOUT_S
    if "timeout" in args:
        timeout = args["timeout"].duration(maximum_s=MAX_APPROVAL_TIMEOUT_S)
    sod = args["separation_of_duties"].boolean() if "separation_of_duties" in args else True
    reason = _template(args["reason"]) if "reason" in args else None
    return RequireApproval(ApprovalGroup(roles, identities, quorum, sod), timeout, reason)


def _approvers(at: At) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`[finance, "logline-id://person/bob"]` or `{roles: [...], identities: [...]}`."""
    roles: set[str] = set()
    identities: set[str] = set()
    if isinstance(at.value, Mapping):
        members = at.mapping(optional=("roles", "identities"), what="argument")
        role_items = members["roles"].list() if "roles" in members else []
        identity_items = members["identities"].list() if "identities" in members else []
    else:
        role_items, identity_items = [], []
        for item in at.list(nonempty=True):
            is_id = isinstance(item.value, str) and item.value.startswith(PREFIX)
            (identity_items if is_id else role_items).append(item)
    for item in role_items:
        roles.add(item.matching(_ROLE, "a role name (a-z, then a-z, 0-9, '_', '-')"))
    for item in identity_items:
        try:
            identities.add(str(LogLineId.parse(item.string())))
        except InvalidIdentifier as exc:
            raise item.error(str(exc)) from exc
    if not roles and not identities:
        raise at.error("name at least one approver role or identity")
    if len(roles) + len(identities) > 100:
        raise at.error("at most 100 approver roles and identities")
    return tuple(sorted(roles)), tuple(sorted(identities))


def _enqueue(at: At, webhooks: WebhookAllowList) -> Action:
    args = _args(at, None, job=True, payload=False, queue=False, priority=False, dedupe_key=False)
    job = _kind(args["job"], what="job type")
    payload = _json_template(args["payload"]) if "payload" in args else JsonTemplate.parse(None)
    queue = priority = None
    if "queue" in args and args["queue"].value is not None:
        text = args["queue"].string()
        try:
            queue = check_queue(text)
        except InvalidInput as exc:
            raise args["queue"].error(str(exc)) from exc
    if "priority" in args and args["priority"].value is not None:
        priority = args["priority"].choice(tuple(PRIORITIES))
    dedupe = None
    if "dedupe_key" in args and args["dedupe_key"].value is not None:
        dedupe = _template(args["dedupe_key"], limit=200)
    return Enqueue(job, payload, queue, priority, dedupe)


def _emit(at: At, webhooks: WebhookAllowList) -> Action:
    args = _args(at, None, kind=True, title=True, payload=False, tags=False)
    kind = _kind(args["kind"], what="span kind")
    if kind.startswith(RESERVED_PREFIXES):
        raise args["kind"].error(
            f"kinds starting with {' or '.join(RESERVED_PREFIXES)} are LogLine's own"
        )
    payload = _json_template(args["payload"]) if "payload" in args else JsonTemplate.parse(None)
    tags = _tags(args["tags"], nonempty=False) if "tags" in args else ()
    return Emit(kind, _template(args["title"]), payload, tags)


def _webhook(at: At, webhooks: WebhookAllowList) -> Action:
    args = _args(at, "url", url=True, body=False)
    url_at = args["url"]
    url = url_at.string(limit=2048)
    try:
        check_url(url)
    except InvalidInput as exc:
        raise url_at.error(str(exc)) from exc
    if not webhooks.allows(url):
        listed = ", ".join(webhooks.prefixes) or "nothing"
        raise url_at.error(f"{url[:120]} is not on this instance's webhook allow-list ({listed})")
    body = None
    if "body" in args and args["body"].value is not None:
        body = _json_template(args["body"])
    return Webhook(url, body)


def _kind(at: At, *, what: str) -> str:
    try:
        return check_kind(at.string())
    except InvalidIdentifier as exc:
        raise at.error(f"{what}: {exc}") from exc


_COMPILERS = {
    "allow": _allow,
    "reject": _reject,
    "simulate": _simulate,
    "add_tag": _add_tag,
    "set_metadata": _set_metadata,
    "note": _note,
    "require_approval": _require_approval,
    "enqueue": _enqueue,
    "emit": _emit,
    "webhook": _webhook,
}
