"""Node labels as `logline worker --label` takes them, and how `logline node list` shows ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from logline.cli.nodes import ago
from logline.engine.nodes import MAX_LABELS, check_labels, parse_label
from logline.errors import InvalidInput
from logline.ledger.timefmt import format_ts


def test_labels_parse_as_key_value() -> None:
    assert parse_label("zone=eu-1") == ("zone", "eu-1")
    assert parse_label("k8s.io/arch=amd64") == ("k8s.io/arch", "amd64")
    assert parse_label("note=a=b") == ("note", "a=b")  # the first '=' splits
    assert parse_label("empty=") == ("empty", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zone", "key=value"),
        ("=eu", "label key"),
        ("bad key=x", "label key"),
        ("_zone=x", "label key"),
        ("k" * 64 + "=x", "label key"),
        ("zone=" + "x" * 201, "at most 200"),
        ("zone=tab\there", "control characters"),
    ],
)
def test_bad_labels_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_label(text)


def test_label_sets_are_bounded_and_typed() -> None:
    assert check_labels({}) == {}
    assert len(check_labels({f"k{i}": "v" for i in range(MAX_LABELS)})) == MAX_LABELS
    with pytest.raises(InvalidInput, match="at most 32 labels"):
        check_labels({f"k{i}": "v" for i in range(MAX_LABELS + 1)})
    with pytest.raises(InvalidInput, match="must be a string"):
        check_labels({"zone": 1})
    with pytest.raises(InvalidInput, match="object"):
        check_labels(["zone=eu"])


def test_ages_for_people() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def at(seconds: float) -> str:
        return ago(format_ts(now - timedelta(seconds=seconds)), now).split(" ", 1)[1]

    assert [at(0), at(4.9), at(75), at(7200), at(3 * 86_400)] == [
        "(0s ago)", "(4s ago)", "(1m ago)", "(2h ago)", "(3d ago)"
    ]  # fmt: skip
    assert ago("not a time", now) == "not a time"
