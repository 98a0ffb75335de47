"""LogLine: a verifiable timeline."""

__version__ = "0.1.0"
