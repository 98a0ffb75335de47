"""LogLine benchmarks: `python -m bench <name>`, for ingest and proofs (the library) and
http-ingest, ack-latency, query and fanout (a real server process).

Each benchmark prints JSON lines, one object per measurement, with at least `bench`, `backend`,
`variant`, `metric`, `value`, `unit`, `ratio` and `ratio_to`: every figure is reported against a
bound measured in the same run (DESIGN.md §7). Results and machine details: docs/PERFORMANCE.md.
"""
