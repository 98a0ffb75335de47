"""Schedules across processes: two `logline serve` on one PostgreSQL, both firing every second,
queue each period of a one-second schedule exactly once; made and paused with `logline schedule`.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from logline.ledger.timefmt import parse_ts
from servers import logline_command, running_server, scratch_postgres, server_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

TENANT = "default"
RUN_S = 6.0


def _cli(server: str, token: str, *args: str) -> str:
    """`logline schedule <args>` against `server`; its standard output."""
    env = server_env(LOGLINE_SERVER=server, LOGLINE_TOKEN=token)
    done = subprocess.run([*logline_command(), "schedule", *args], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_two_servers_queue_each_period_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with scratch_postgres() as url, running_server(home, database_url=url) as first:
        with running_server(home, command="serve", database_url=url) as second:
            token = first.login()
            made = json.loads(_cli(first.url, token, "add", "tick", "logline.noop", "--every",
                                   "1s", "--payload", '{"n": 1}', "--json"))  # fmt: skip
            time.sleep(RUN_S)
            paused = json.loads(_cli(second.url, token, "pause", "tick", "--json"))
            assert paused["enabled"] is False and paused["id"] == made["id"]
            # Paused under the row's lock: whatever was queued is there, and nothing follows.
            with first.client(token) as http:
                page = http.get(
                    f"/v1/tenants/{TENANT}/spans",
                    params={"kind": "job.queued", "caused_by": made["span_id"], "limit": 1000},
                ).json()
                jobs = http.get(f"/v1/tenants/{TENANT}/jobs", params={"limit": 1000}).json()
                time.sleep(1.5)
                later = http.get(f"/v1/tenants/{TENANT}/jobs", params={"limit": 1000}).json()
            assert len(later["jobs"]) == len(jobs["jobs"])
            _cli(second.url, token, "rm", "tick")
            assert json.loads(_cli(first.url, token, "list", "--json")) == []
    queued = [item["span"]["payload"] for item in page["items"]]
    periods = [payload["period"] for payload in queued]
    assert len(periods) == len(set(periods)) >= RUN_S - 2, periods  # none twice
    # Every period from the first on is run or counted as missed by the run after it.
    created = parse_ts(made["created_at"])
    expected_next = created + timedelta(seconds=1)
    for payload in sorted(queued, key=lambda p: p["period"]):
        assert parse_ts(payload["period"]) == expected_next + timedelta(seconds=payload["missed"])
        expected_next = parse_ts(payload["period"]) + timedelta(seconds=1)
    keys = sorted(j["dedupe_key"] for j in jobs["jobs"])
    assert keys == sorted(f"schedule:{made['id']}:{period}" for period in periods)
    assert {j["type"] for j in jobs["jobs"]} == {"logline.noop"}
