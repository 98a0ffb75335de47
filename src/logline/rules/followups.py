"""Follow-ups: work a decision asks for once its span is committed (enqueue, emit, webhook).

    >>> job = EnqueueJob(rule="bill", job="invoice.render", payload={"id": 42})
    >>> follow_up_from_json(job.to_json()) == job
    True

Templates are rendered when the rule is evaluated, so a follow-up holds plain values and can be
written to an outbox as `to_json()` and read back with `follow_up_from_json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from logline.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class EnqueueJob:
    """Submit a job of type `job` (queue and priority None: the engine's defaults)."""

    rule: str
    job: str
    payload: Any = None
    queue: str | None = None
    priority: str | None = None
    dedupe_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "enqueue", "rule": self.rule, "job": self.job, "payload": self.payload,
            "queue": self.queue, "priority": self.priority, "dedupe_key": self.dedupe_key,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class EmitSpan:
    """Append a span signed by the instance, `caused_by` the trigger span (its id)."""

    rule: str
    kind: str
    title: str
    payload: Any = None
    tags: tuple[str, ...] = ()
    caused_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "emit", "rule": self.rule, "kind": self.kind, "title": self.title,
            "payload": self.payload, "tags": list(self.tags), "caused_by": self.caused_by,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """POST `body` to `url` (allow-listed when the rule set was compiled; check again on send)."""

    rule: str
    url: str
    body: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "webhook", "rule": self.rule, "url": self.url, "body": self.body}


FollowUp = EnqueueJob | EmitSpan | CallWebhook


def follow_up_from_json(data: Any) -> FollowUp:
    """Read back a follow-up's `to_json()`; `InvalidInput` if it is not one."""
    try:
        kind = data["type"]
        rule = str(data["rule"])
        if kind == "enqueue":
            return EnqueueJob(
                rule, str(data["job"]), data["payload"], _opt(data["queue"]),
                _opt(data["priority"]), _opt(data["dedupe_key"]),
            )  # fmt: skip
        if kind == "emit":
            return EmitSpan(
                rule, str(data["kind"]), str(data["title"]), data["payload"],
                tuple(str(tag) for tag in data["tags"]), _opt(data["caused_by"]),
            )  # fmt: skip
        if kind == "webhook":
            return CallWebhook(rule, str(data["url"]), data["body"])
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"not a follow-up: missing or wrong {exc}") from exc
    raise InvalidInput(f"unknown follow-up type {kind!r}")


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
