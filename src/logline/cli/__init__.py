"""The `logline` command line: Typer commands over the library, Rich output.

`logline.cli.main:main` is the console script. Every expected failure is a `LogLineError`, which
`main` turns into one `error: ...` line on stderr and exit status 1; usage errors exit with 2.
"""
