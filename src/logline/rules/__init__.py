"""The rules language: rule set documents parsed, checked, compiled once and evaluated per span.

    >>> ruleset = compile_ruleset('''
    ... default: allow
    ... rules:
    ...   - id: large-payments
    ...     priority: 10
    ...     when:
    ...       kind: payment.*
    ...       path: payload.amount
    ...       greater_than: 10000
    ...     then:
    ...       - require_approval: {approvers: [finance], quorum: 2, timeout: 24h}
    ...       - add_tag: large
    ...   - id: brute-force
    ...     when:
    ...       kind: login.failed
    ...       count: {kind: login.failed, by: author, within: 5m}
    ...       greater_than: 5
    ...     then: [{reject: too many failed logins}]
    ... ''')
    >>> decision = ruleset.evaluate({"kind": "payment.approved", "payload": {"amount": 25000}})
    >>> decision.outcome, decision.tags, decision.approval.groups[0].quorum
    ('hold', ('large',), 2)
    >>> check_examples(ruleset)
    []

`compile_ruleset` raises `RuleError` (logline.errors) naming the location of the first problem.
`RuleSet.evaluate(span, EvalContext(...))` returns a `Decision`; the caller implements
`WindowCounter` for window counts. docs/RULES.md is the language reference.
"""

from __future__ import annotations

from logline.rules.approvals import ApprovalGroup, ApprovalRequirement
from logline.rules.context import EvalContext, WindowCounter
from logline.rules.decision import OUTCOMES, Decision, EvalError, Note, Outcome, Reason
from logline.rules.examples import Example, ExampleFailure, check_examples
from logline.rules.followups import CallWebhook, EmitSpan, EnqueueJob, FollowUp, follow_up_from_json
from logline.rules.globs import KindGlob
from logline.rules.ruleset import Rule, RuleSet, compile_ruleset, span_view
from logline.rules.webhooks import NO_WEBHOOKS, WebhookAllowList

__all__ = [
    "NO_WEBHOOKS",
    "OUTCOMES",
    "ApprovalGroup",
    "ApprovalRequirement",
    "CallWebhook",
    "Decision",
    "EmitSpan",
    "EnqueueJob",
    "EvalContext",
    "EvalError",
    "Example",
    "ExampleFailure",
    "FollowUp",
    "KindGlob",
    "Note",
    "Outcome",
    "Reason",
    "Rule",
    "RuleSet",
    "WebhookAllowList",
    "WindowCounter",
    "check_examples",
    "compile_ruleset",
    "follow_up_from_json",
    "span_view",
]
