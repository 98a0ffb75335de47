"""When to try a request again, and how long to wait first: a pure policy.

    >>> import random
    >>> policy = RetryPolicy(attempts=4, base_s=0.5, cap_s=4.0)
    >>> policy.decide(attempt=0, idempotent=False, status=429, retry_after=2, rng=random.Random(1))
    2.0
    >>> policy.decide(attempt=0, idempotent=False, status=503, rng=random.Random(1)) is None
    True
    >>> 0.5 <= policy.decide(attempt=1, idempotent=True, status=503, rng=random.Random(1)) <= 1.0
    True

The rules, for attempt `n` (0 for the first try) out of `attempts`:

1. 429 is retried for every request: the server refused it before doing anything. The wait is
   the server's `Retry-After`, or the backoff if longer; a `Retry-After` beyond
   `max_retry_after_s` is not waited for at all (the error goes to the caller).
2. 503 (and 502, 504 from a proxy) is retried only for idempotent requests: reads, and appends of
   client-signed spans, whose ids the client chose (a repeat is detected as a duplicate).
3. A connection failure is retried for idempotent requests, and for any request when it surely
   never reached the server (`sent=False`: connection refused, connect timeout).

The backoff is exponential with "equal jitter": half of `min(cap_s, base_s * 2**n)` plus a
uniform random part of the other half, so that clients refused together do not return together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRIED_STATUSES = frozenset({502, 503, 504})
RATE_LIMITED = 429


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included; 1 never retries
    base_s: float = 0.25
    cap_s: float = 8.0
    max_retry_after_s: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before try `attempt + 1` (equal jitter)."""
        ceiling = min(self.cap_s, self.base_s * float(2 ** min(attempt, 30)))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def decide(
        self,
        *,
        attempt: int,
        idempotent: bool,
        rng: random.Random,
        status: int | None = None,
        retry_after: int = 0,
        sent: bool = True,
    ) -> float | None:
        """Seconds to wait before trying again, or None to give up (and raise).

        Give `status` for a response, or leave it None for a connection failure (with `sent`).
        """
        if attempt + 1 >= self.attempts:
            return None
        if status is None:
            return self.backoff(attempt, rng) if idempotent or not sent else None
        if status == RATE_LIMITED:
            if retry_after > self.max_retry_after_s:
                return None
            return max(float(retry_after), self.backoff(attempt, rng))
        if status in RETRIED_STATUSES and idempotent:
            return self.backoff(attempt, rng)
        return None


NO_RETRY = RetryPolicy(attempts=1)
