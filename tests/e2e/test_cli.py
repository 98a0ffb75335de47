"""The `logline` console script as a user runs it: real subprocesses, real data directories.

Every failing command must print exactly one `error: ...` line on stderr, exit with status 1 and
leave the data directory as it was; `snapshot` reads the store and the keystore to check that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from logline.config import sqlite_url
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.identity.keystore import MIN_N, Keystore
from logline.instance import Instance
from logline.ledger.bundle import export_bundle
from logline.ledger.span import new_span
from logline.store import open_store

pytestmark = pytest.mark.e2e

PASSPHRASE = "e2e passphrase"
ALICE = "logline-id://person/alice"
GHOST = "logline-id://ghost/visitor-7"


def _logline() -> str:
    beside = Path(sys.executable).parent / "logline"
    found = str(beside) if beside.exists() else shutil.which("logline")
    assert found, "the logline console script is not installed (pip install -e .)"
    return found


LOGLINE = _logline()


def run(*args: str, home: Path | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None, stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOGLINE_HOME", "LOGLINE_DATABASE_URL", "LOGLINE_PASSPHRASE")
    }
    # A fixed width keeps Rich tables on one line per row, whatever the runner exports.
    environment |= {"LOGLINE_PASSPHRASE": PASSPHRASE, "COLUMNS": "200", **(env or {})}
    command = [LOGLINE, *(("--home", str(home)) if home is not None else ()), *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd,
                          input=stdin, timeout=60)  # fmt: skip


def ok(*args: str, **kwargs: Any) -> str:
    result = run(*args, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def field(output: str, label: str) -> str:
    """A value from the aligned `label  value` lines most commands print."""
    match = re.search(rf"^{re.escape(label)} {{2,}}(\S.*)$", output, re.M)
    assert match, f"no {label!r} in:\n{output}"
    return match.group(1).strip()


def fails(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(home: Path) -> dict[str, Any]:
    store = open_store(sqlite_url(home))
    try:
        heads = store.logs()
        return {
            "logs": heads,
            "checkpoints": [store.checkpoints(h.log_id) for h in heads],
            "identities": store.identities(),
            "keys": [store.keys(r.id) for r in store.identities()],
            "spans": [s for h in heads for s in store.spans(h.tenant, 0, h.size)],
            "keystore": (home / "keystore.json").read_bytes(),
        }
    finally:
        store.close()


@dataclass(frozen=True)
class World:
    home: Path  # alice, a ghost and one span with a payload, exported to `bundle`
    replica: Path  # an empty instance of another name
    bundle: Path
    key: str
    identity_span: str
    payload_span: str

    def copy(self, target: Path, source: Path | None = None) -> Path:
        shutil.copytree(source or self.home, target)
        return target


def build_world(root: Path) -> World:
    """The shared starting point, built in-process: faster than the CLI, and the same files."""
    home, replica, bundle = root / "home", root / "replica", root / "acme.ndjson"
    with Instance.init(home, name="a.example", tenant="acme") as instance:
        keystore = Keystore.create(instance.config.keystore_path, PASSPHRASE, n=MIN_N)
        keys = {ALICE: PrivateKey.generate(), GHOST: PrivateKey.generate()}
        for identity, key in keys.items():
            keystore.add(identity, key)
        alice = creation_span(keys[ALICE], "acme", LogLineId.parse(ALICE), "Alice")
        ghost = creation_span(keys[GHOST], "acme", LogLineId.parse(GHOST),
                              expires_at=datetime.now(UTC) + timedelta(days=7))  # fmt: skip
        span = new_span(keys[ALICE], tenant="acme", author=ALICE, kind="payment.approved",
                        title="Approve 42", payload={"amount": 42})  # fmt: skip
        instance.log.append_batch([alice, ghost, span])
        with bundle.open("w") as out:
            export_bundle(instance.log, "acme", out)
        log_key = str(instance.log.verifier())
    with Instance.init(replica, name="b.example", tenant="default") as instance:
        Keystore.create(instance.config.keystore_path, PASSPHRASE, n=MIN_N)
    return World(home, replica, bundle, log_key, alice.id, span.id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world"))


# --- the happy path ---------------------------------------------------------------------------


def test_happy_path_from_init_to_a_verified_replica(world: World, tmp_path: Path) -> None:
    home, nowhere = tmp_path / "home", tmp_path / "nowhere"
    created = ok("init", "--instance", "a.example", "--tenant", "acme", home=home)
    key = field(created, "log key")
    assert key.startswith("a.example+") and PASSPHRASE not in created
    assert (home / "instance.key").stat().st_mode & 0o077 == 0
    assert ok("log", "key", home=home).strip() == key

    new = ok("id", "new", "person", "alice", "--name", "Alice", home=home)
    assert field(new, "id") == ALICE and field(new, "public key").startswith("ed25519:")
    assert "yes" in ok("id", "list", home=home)

    added = ok("span", "add", "--as", ALICE, "--kind", "payment.approved", "--title",
               "Approve invoice 42", "--payload", '{"invoice": 42, "amount": 1250}', "--tag",
               "finance", "--receipt-out", str(tmp_path / "receipt.json"), home=home)  # fmt: skip
    first = field(added, "span")
    assert field(added, "seq") == "1" and field(added, "receipt") == "checkpointed"
    settled = ok("span", "add", "--as", ALICE, "--kind", "payment.settled", "--title", "Settled",
                 "--caused-by", first, "--wait", "sequenced", home=home)  # fmt: skip
    second = field(settled, "span")
    assert field(settled, "receipt") == "sequenced"

    listed = json.loads(ok("span", "list", "--kind", "payment.*", "--json", home=home))
    assert [i["span"]["body"]["id"] for i in listed["items"]] == [first, second]
    assert listed["items"][1]["span"]["body"]["caused_by"] == first
    page = ok("span", "list", "--limit", "1", "--desc", home=home)
    assert second in page and "next cursor:" in page
    shown = ok("span", "show", first, "--json", home=home)
    (tmp_path / "span.json").write_text(shown)
    assert json.loads(shown)["span"]["payload"] == {"invoice": 42, "amount": 1250}

    note = ok("log", "checkpoint", home=home)
    assert note.startswith("a.example/acme\n3\n") and "\n\n\u2014 a.example " in note
    receipt = json.loads(ok("log", "prove", "1", home=home))
    assert receipt["status"] == "checkpointed" and receipt["entry"]["span_id"] == first
    (tmp_path / "proof.json").write_text(json.dumps(receipt))
    consistency = json.loads(ok("log", "prove", "--from", "2", "--to", "3", home=home))
    assert (consistency["size1"], consistency["size2"]) == (2, 3)
    assert json.loads((tmp_path / "receipt.json").read_text())["entry"] == receipt["entry"]
    checked = ok("verify-receipt", "proof.json", "--key", key, "--span", "span.json", cwd=tmp_path)
    assert field(checked, "result").startswith("OK")

    ok("export", str(tmp_path / "acme.ndjson"), home=home)
    # Offline: no --home, LOGLINE_HOME pointing nowhere, and nothing gets created.
    verified = ok("verify", "acme.ndjson", "--key", key, cwd=tmp_path,
                  env={"LOGLINE_HOME": str(nowhere)})  # fmt: skip
    assert field(verified, "entries") == "0..2" and field(verified, "log") == "a.example/acme"
    assert not nowhere.exists() and not (tmp_path / ".logline").exists()

    other = world.copy(tmp_path / "other", world.replica)  # a second, empty instance
    imported = ok("import", str(tmp_path / "acme.ndjson"), "--key", key, home=other)
    assert field(imported, "root") == field(verified, "root")
    replica = ok("log", "verify", "--tenant", "acme", home=other)
    assert field(replica, "entries") == "3" and field(replica, "result").startswith("OK")


def test_rotate_claim_revert_replay_redact_keep_the_log_verifiable(
    world: World, tmp_path: Path
) -> None:
    home = world.copy(tmp_path / "home")
    rotated = ok("id", "rotate", ALICE, home=home)
    assert field(rotated, "new key") != field(rotated, "old key")
    # The keystore now holds the new key, which the log accepts.
    ok("span", "add", "--as", ALICE, "--kind", "note.added", "--title", "After", home=home)
    assert "(current)" in ok("id", "show", ALICE, home=home)
    ok("id", "claim", GHOST, "--as", ALICE, home=home)
    assert re.search(r"visitor-7\s.*claimed", ok("id", "list", home=home))

    reverted = ok("revert", world.payload_span, "--as", ALICE, "--reason", "typo", home=home)
    assert field(reverted, "status") == "reverted"
    replay = field(ok("replay", world.payload_span, "--as", ALICE, home=home), "span")
    ok("redact", world.payload_span, "--as", ALICE, "--reason", "customer request", home=home)
    listed = json.loads(ok("span", "list", "--kind", "payment.*", "--json", home=home))["items"]
    spans = {item["span"]["body"]["id"]: item for item in listed}
    original, replayed = spans[world.payload_span], spans[replay]
    assert "payload" not in original["span"] and original["redacted_by"]
    assert original["reverted_by"] == field(reverted, "span")
    assert replayed["span"]["body"]["replay_of"] == world.payload_span
    assert replayed["span"]["payload"] == {"amount": 42}

    before = snapshot(home)
    fails(run("replay", world.payload_span, "--as", ALICE, home=home), "redacted")
    assert snapshot(home) == before
    checked = ok("log", "verify", home=home)
    assert field(checked, "redacted") == "1" and field(checked, "result").startswith("OK")
    assert field(checked, "entries") == "9"  # 3 + rotation, span, claim, revert, replay, redaction


def test_the_demo_runs_and_prints_its_summary(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "logline.demo"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Summary:" in result.stdout and "tampering caught at entry" in result.stdout
    assert "logline --home demo-data span list" in result.stdout
    assert (tmp_path / "demo-data" / "acme.ndjson").exists()


# --- unhappy paths: one line, status 1, nothing changed ---------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--as", "logline-id://person/bob", "--kind", "a.b", "--title", "x"], "person/bob"),
        (["--as", ALICE, "--kind", "a.b", "--title", "x", "--payload", "{bad"], "--payload"),
        (["--as", ALICE, "--kind", "Payment", "--title", "x"], "kind"),
        (["--as", ALICE, "--kind", "identity.forged", "--title", "x"], "reserved"),
    ],
    ids=["unknown-identity", "bad-payload-json", "bad-kind", "reserved-kind"],
)
def test_span_add_refuses_bad_input(world: World, tmp_path: Path, args: list[str],
                                    needle: str) -> None:  # fmt: skip
    home = world.copy(tmp_path / "home")
    before = snapshot(home)
    fails(run("span", "add", *args, home=home), needle)
    assert snapshot(home) == before


def test_wrong_passphrase_changes_nothing(world: World, tmp_path: Path) -> None:
    home = world.copy(tmp_path / "home")
    before = snapshot(home)
    line = fails(run("id", "new", "person", "carol", home=home,
                     env={"LOGLINE_PASSPHRASE": "not it"}), "wrong passphrase")  # fmt: skip
    assert "not it" not in line
    assert snapshot(home) == before


def test_redacting_an_identity_document_is_refused(world: World, tmp_path: Path) -> None:
    home = world.copy(tmp_path / "home")
    before = snapshot(home)
    fails(run("redact", world.identity_span, "--as", ALICE, "--reason", "gdpr", home=home),
          "identity documents")  # fmt: skip
    assert snapshot(home) == before


def test_a_corrupt_bundle_line_is_refused(world: World, tmp_path: Path) -> None:
    lines = world.bundle.read_text().splitlines(keepends=True)
    lines[2] = "{not json\n"
    corrupt = tmp_path / "corrupt.ndjson"
    corrupt.write_text("".join(lines))
    fails(run("verify", str(corrupt), "--key", world.key, cwd=tmp_path), "bundle line 3")
    replica = world.copy(tmp_path / "replica", world.replica)
    before = snapshot(replica)
    fails(run("import", str(corrupt), home=replica), "bundle line 3")
    assert snapshot(replica) == before


def test_a_tampered_bundle_byte_names_the_entry(world: World, tmp_path: Path) -> None:
    text = world.bundle.read_text()
    assert text.count("Approve 42") == 1
    tampered = tmp_path / "tampered.ndjson"
    tampered.write_text(text.replace("Approve 42", "Approve 43"))
    fails(run("verify", str(tampered), "--key", world.key, cwd=tmp_path), "entry 2")
    replica = world.copy(tmp_path / "replica", world.replica)
    before = snapshot(replica)
    fails(run("import", str(tampered), home=replica), "entry 2")
    assert snapshot(replica) == before


def test_log_verify_names_the_first_tampered_entry(world: World, tmp_path: Path) -> None:
    home = world.copy(tmp_path / "home")
    database = sqlite3.connect(home / "logline.db")
    with closing(database), database:
        database.execute("UPDATE entries SET body = CAST(REPLACE(CAST(body AS TEXT), "
                         "'Approve 42', 'Approve 43') AS BLOB)")  # fmt: skip
    fails(run("log", "verify", home=home), "entry 2: span hash")


def test_commands_on_a_missing_data_directory_fail_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    fails(run("log", "verify", cwd=tmp_path, env={"LOGLINE_HOME": str(missing)}),
          "no LogLine data directory", str(missing))  # fmt: skip
    assert not missing.exists()


def test_usage_errors_exit_with_status_2(world: World) -> None:
    result = run("log", "prove", home=world.home)
    assert result.returncode == 2 and "Traceback" not in result.stderr
