"""Write-path throughput with the rules gate: no active rule set, 10 rules, 100 rules.

    python -m bench rules [--spans 20000] [--single-spans 4000] [--batch 500] [--repeat 3]
                          [--backend sqlite|postgres|all] [--sets 0,10,100] [--profile]

The gate is installed as a server installs it (`RulesGate`, with the server's role lookup) on an
in-process `Log`, on a fresh store per variant; spans are built and signed first (not timed), by
4 registered authors, with a realistic mix of kinds: payments, orders, sign-ins (some failed),
deploys and API calls, each with a small payload. Variants:

* `no_gate`: the log without a gate, as `bench ingest` measures it (for reference);
* `rules_0`: the gate installed and no rule set active (every span allowed, no evaluation);
* `rules_10`, `rules_100`: a set of that many rules published (`RuleSets.publish`, as the API
  does). A handful match each span (about 3; see `ruleset`): kind globs with payload paths, a
  tag test and a `**` rule on every span, a CEL expression, a window count (`login.failed` by
  the author in 5 minutes, a database query per failed sign-in), a simulated kind; the rest are
  rules of the corpus' kinds whose payload test fails, rules of kinds nobody writes, and (a
  third of them) wildcard globs that every span tries. No rule rejects or holds, so every
  span is logged (a rejection refuses a whole batch).

Phases per variant: `batch_sequenced` (`append_batch` of `--batch` spans from 2 threads) and
`single_sequenced` (one span per call from 16 threads). The variants run in turn, `--repeat`
rounds of them, and each reports its best round (every round's rate is in `rounds`). Every
throughput is reported as a ratio to `rules_0` of the same backend and phase (the goal: 100
rules cost less than 20%, a ratio over 0.8), with the process CPU time per span and the rules
matched per span. `--profile` runs the largest set's batch phase once more, on one thread,
under cProfile, and prints the top functions to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bench.common import (
    Emitter,
    backends,
    pg_admin_url,
    pg_backend_cpu,
    pg_create_database,
    pg_database_url,
    pg_drop_database,
    pg_server_version,
)
from bench.ingest import run_phase
from logline.identity.documents import creation_span
from logline.identity.ids import LogLineId
from logline.identity.keys import PrivateKey
from logline.ledger.log import Log
from logline.ledger.span import Span, new_span
from logline.rules.context import EvalContext
from logline.rules.gate import RulesGate
from logline.rules.ruleset import compile_ruleset
from logline.rules.sets import RuleSets
from logline.server.services import roles_of
from logline.store import open_store
from logline.store.interface import Store

TENANT = "bench"
SYSTEM = "system"
INSTANCE = "bench.local"
IDENTITIES = 4
BATCH_THREADS = 2
SINGLE_THREADS = 16
PG_DATABASE = "logline_bench_rules"
SETS = (0, 10, 100)
BASELINE = "rules_0"
PHASES = ("batch_sequenced", "single_sequenced")
# The kinds of the corpus, in rotation: what a tenant's writers send.
KINDS = ("payment.approved", "order.created", "login.succeeded", "payment.settled",
         "login.failed", "api.called", "deploy.started", "order.shipped")  # fmt: skip
CORE_RULES = """
  - id: big-payments
    priority: 10
    when: {kind: payment.*, path: payload.amount, greater_than: 500}
    then:
      - add_tag: big
      - set_metadata: {amount: "${payload.amount}", review: manual}
  - id: test-payments
    priority: 5
    when: {kind: payment.*, path: payload.test, equals: true}
    then: [{reject: test payments are not allowed}]
  - id: eur-orders
    when:
      kind: order.*
      cel: 'has(payload.currency) && payload.currency == "EUR" && payload.amount > 100'
    then: [{note: "EUR order of ${payload.amount}"}]
  - id: brute-force
    priority: 1
    when:
      kind: login.failed
      count: {kind: login.failed, by: author, within: 5m}
      greater_than: 1000000
    then: [{reject: too many failed logins}]
  - id: deploys
    when: {kind: deploy.*}
    then: [{simulate: deploys are rehearsed}]
  - id: audited
    priority: 1000
    when: {contains_tag: bench}
    then: [{add_tag: audited}]
  - id: amounts
    when: {kind: '**', exists: payload.amount}
    then: [{set_metadata: {currency: "${payload.currency}"}}]
  - id: commerce
    when: {kind: [payment.*, order.*]}
    then: [{add_tag: commerce}]
  - id: sign-ins
    when: {kind: login.*}
    then: [{note: "sign-in by ${author.id}"}]
"""
CORE_COUNT = 9


def ruleset(count: int) -> str:
    """A document of `count` rules: the nine core rules (above), then fillers. A filler of the
    corpus' kinds tests a payload value no span has; a wildcard one (`**.failed`, `**`) is tried
    by every span and tests a tag no span has; the others are rules of kinds nobody writes."""
    fillers = []
    for i in range(max(0, count - CORE_COUNT)):
        if i % 3 == 0:
            kind = ("payment.*", "order.*", "login.*", "api.*")[i // 3 % 4]
            when = f"{{kind: {kind}, path: payload.region, equals: region-{i}}}"
        elif i % 3 == 1:
            glob = "**.failed" if i % 2 else "**"
            when = f"{{kind: '{glob}', contains_tag: team-{i}}}"
        else:
            when = f"{{kind: team{i}.*, path: payload.amount, greater_than: {i}}}"
        fillers.append(f"  - id: filler-{i:03d}\n    when: {when}\n    then: [{{add_tag: f{i}}}]\n")
    core = CORE_RULES if count else ""
    if 0 < count < CORE_COUNT:
        raise SystemExit(f"a rule set here has 0 or at least {CORE_COUNT} rules")
    return "rules:\n" + core.lstrip("\n") + "".join(fillers)


@dataclass
class Corpus:
    creations: list[Span]
    instance: tuple[str, PrivateKey]
    phases: dict[str, list[Span]]


def make_corpus(spans: int, single: int) -> Corpus:
    keys: dict[str, PrivateKey] = {}
    creations = []
    for i in range(IDENTITIES):
        key = PrivateKey.generate()
        identity = LogLineId.of("service", f"bench-writer-{i}")
        keys[str(identity)] = key
        creations.append(creation_span(key, TENANT, identity, f"Bench writer {i}"))
    instance_key = PrivateKey.generate()
    instance = LogLineId.of("service", INSTANCE)
    creations.append(creation_span(instance_key, SYSTEM, instance, "Bench instance"))
    authors = list(keys)
    phases: dict[str, list[Span]] = {}
    for phase in PHASES:
        count = single if phase.startswith("single") else spans
        phases[phase] = [_span(keys, authors, phase, i) for i in range(count)]
    return Corpus(creations, (str(instance), instance_key), phases)


def _span(keys: dict[str, PrivateKey], authors: list[str], phase: str, i: int) -> Span:
    author = authors[i % IDENTITIES]
    kind = KINDS[i % len(KINDS)]
    payload = {"i": i, "amount": (i * 37) % 1000, "currency": ("EUR", "USD")[i % 2],
               "phase": phase}  # fmt: skip
    return new_span(keys[author], tenant=TENANT, author=author, kind=kind,
                    title=f"Bench {kind} {i}", tags=["bench"], payload=payload)  # fmt: skip


def matched_per_span(count: int, spans: Sequence[Span]) -> float:
    """How many rules match a span on average (window counts answered 0)."""
    if not count:
        return 0.0
    compiled = compile_ruleset(ruleset(count))
    context = EvalContext(counter=_Zero())
    return sum(len(compiled.evaluate(span, context).matched) for span in spans) / len(spans)


class _Zero:
    def count(self, kind: object, author: str | None, within_s: int) -> int:
        return 0


def open_log(store: Store, corpus: Corpus, rules: int | None) -> Log:
    """A log over `store` with the gate (unless `rules` is None) and `rules` rules published."""
    log = Log(store, instance=INSTANCE, key=PrivateKey.generate())
    for span in corpus.creations:
        log.append(span, wait="sequenced")
    if rules is None:
        return log
    author, key = corpus.instance
    sets = RuleSets(log, author=author, key=key)
    log.gate = RulesGate(sets, roles_of, author=author, key=key)
    if rules:
        sets.publish(TENANT, ruleset(rules), by=author)
    return log


def variants(chosen: Sequence[int]) -> list[tuple[str, int | None]]:
    """The baseline first: every other variant is reported against it."""
    return [(BASELINE, 0), ("no_gate", None)] + [(f"rules_{n}", n) for n in chosen if n]


@dataclass
class Measured:
    rate: float  # spans/s
    elapsed_s: float
    cpu_us: float  # this process, all threads, per span
    server_cpu_us: float | None  # PostgreSQL's server processes, per span


def run_variant(
    make_store: Callable[[], Store],
    corpus: Corpus,
    rules: int | None,
    *,
    batch: int,
    server_cpu: Callable[[], dict[int, float]] | None,
) -> dict[str, Measured]:
    """Every phase once, on a fresh store; what each measured."""
    store = make_store()
    log = open_log(store, corpus, rules)
    found: dict[str, Measured] = {}
    try:
        expected = log.head(TENANT).size
        for phase, spans in corpus.phases.items():
            single = phase.startswith("single")
            threads = SINGLE_THREADS if single else BATCH_THREADS
            before = server_cpu() if server_cpu else {}
            result = run_phase(log, spans, threads=threads, batch=1 if single else batch,
                               wait="sequenced")  # fmt: skip
            after = server_cpu() if server_cpu else {}
            server_s = sum(t - before.get(pid, 0.0) for pid, t in after.items())
            expected += result.spans
            found[phase] = Measured(
                result.spans / result.elapsed_s, result.elapsed_s,
                result.cpu_s / result.spans * 1e6,
                server_s / result.spans * 1e6 if after else None,
            )  # fmt: skip
        size = log.head(TENANT).size
        if size != expected:
            raise RuntimeError(f"rules={rules}: {size} entries, expected {expected}")
    finally:
        log.close()
        store.close()
    return found


def run_backend(
    em: Emitter,
    backend: str,
    make_store: Callable[[], Store],
    corpus: Corpus,
    chosen: Sequence[int],
    *,
    batch: int,
    repeat: int,
    server_cpu: Callable[[], dict[int, float]] | None = None,
    profile: bool = False,
) -> None:
    """`repeat` rounds, each running every variant in turn (so that load from elsewhere weighs
    on all of them alike); each variant and phase reports its best round."""
    runs: dict[tuple[str, str], list[Measured]] = {}
    for _ in range(repeat):
        for variant, rules in variants(chosen):
            found = run_variant(make_store, corpus, rules, batch=batch, server_cpu=server_cpu)
            for phase, one in found.items():
                runs.setdefault((variant, phase), []).append(one)
    sample = corpus.phases["batch_sequenced"][:800]
    for variant, rules in variants(chosen):
        matched = matched_per_span(rules or 0, sample)
        for phase in corpus.phases:
            rounds = runs[(variant, phase)]
            best = max(rounds, key=lambda m: m.rate)
            reference = max(m.rate for m in runs[(BASELINE, phase)])
            single = phase.startswith("single")
            em.emit(
                backend=backend, variant=variant, metric=f"{phase}_throughput",
                value=best.rate, unit="spans/s", ratio=best.rate / reference,
                ratio_to=BASELINE, rules=rules, matched_per_span=matched,
                spans=len(corpus.phases[phase]),
                threads=SINGLE_THREADS if single else BATCH_THREADS, batch=1 if single else batch,
                rounds=[round(m.rate) for m in rounds], elapsed_s=best.elapsed_s,
                cpu_us_per_span=best.cpu_us, server_cpu_us_per_span=best.server_cpu_us,
            )  # fmt: skip
    if profile and chosen:
        _profile(backend, make_store, corpus, max(chosen), batch)


def _profile(
    backend: str, make_store: Callable[[], Store], corpus: Corpus, rules: int, batch: int
) -> None:
    """The batch phase of the largest set once more, on one thread, under cProfile."""
    store = make_store()
    log = open_log(store, corpus, rules)
    spans = corpus.phases["batch_sequenced"]
    chunks = [spans[i : i + batch] for i in range(0, len(spans), batch)]
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        for chunk in chunks:
            log.append_batch(chunk, wait="sequenced")
        profiler.disable()
    finally:
        log.close()
        store.close()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).sort_stats("cumulative")
    stats.print_stats(40)
    sys.stderr.write(f"--- profile: {backend}, rules_{rules}, batch_sequenced, 1 thread\n")
    sys.stderr.write(text.getvalue())


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench rules",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--spans", type=int, default=20_000, help="spans of the batch phase")
    parser.add_argument("--single-spans", type=int, default=None,
                        help="spans of the single-append phase (default: spans / 5)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", default="all", help="sqlite, postgres or all")
    parser.add_argument("--sets", default=",".join(map(str, SETS)),
                        help="rule set sizes, comma-separated (0 = no active set)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best one counts")
    parser.add_argument("--profile", action="store_true", help="profile the largest set")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL maintenance URL")
    parser.add_argument("--tmp-dir", default=None, help="where the SQLite files go")
    args = parser.parse_args(argv)
    chosen = sorted({int(n) for n in args.sets.split(",") if n.strip()})
    if 0 not in chosen:
        parser.error("--sets must include 0: the other sizes are reported against it")
    single = args.single_spans if args.single_spans is not None else max(1, args.spans // 5)
    which = backends(args.backend)
    admin = pg_admin_url(args.pg_url)

    em = Emitter("rules", out)
    extra = {"postgres": pg_server_version(admin)} if "postgres" in which else {}
    em.run_info(spans=args.spans, single_spans=single, batch=args.batch, sets=chosen, **extra)
    started = time.perf_counter()
    corpus = make_corpus(args.spans, single)
    for backend in which:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="logline-bench-", dir=args.tmp_dir) as tmp:

                def make_sqlite(directory: Path = Path(tmp)) -> Store:
                    path = directory / "rules.db"
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                    return open_store(f"sqlite:///{path}")

                run_backend(em, "sqlite", make_sqlite, corpus, chosen, batch=args.batch,
                            repeat=args.repeat, profile=args.profile)  # fmt: skip
        else:
            url = pg_database_url(admin, PG_DATABASE)

            def make_pg(url: str = url) -> Store:
                pg_create_database(admin, PG_DATABASE, fresh=True)
                return open_store(url)

            def server_cpu() -> dict[int, float]:
                return pg_backend_cpu(admin, PG_DATABASE)

            try:
                run_backend(em, "postgres", make_pg, corpus, chosen, batch=args.batch,
                            repeat=args.repeat, server_cpu=server_cpu,
                            profile=args.profile)  # fmt: skip
            finally:
                pg_drop_database(admin, PG_DATABASE)
    em.run_end(started)
    return 0
