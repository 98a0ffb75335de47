"""The job engine: jobs, their queue and its transitions, each recorded as a span."""
