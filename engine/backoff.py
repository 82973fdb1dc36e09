"""The one backoff rule: every retry in the project waits ``backoff_delay``.

Exponential (``base_s * factor**(attempt - 1)``), capped at ``cap_s``, and optionally
jittered: each delay is reduced by a random part of up to ``jitter`` (0 = none, 1 = "full
jitter", uniform in ``0..ceiling``) so that many clients do not retry in step.
"""

from __future__ import annotations

import random

_MAX_EXPONENT = 64


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    factor: float = 2.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """The wait before retry number ``attempt`` (1 is the first retry)."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if base_s <= 0 or cap_s < base_s:
        raise ValueError("need 0 < base_s <= cap_s")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError("jitter must be within 0..1")
    ceiling = min(cap_s, base_s * factor ** min(attempt - 1, _MAX_EXPONENT))
    if jitter == 0.0:
        return ceiling
    return ceiling * (1.0 - jitter * (rng or random).random())


class Backoff:
    """``backoff_delay`` with its attempt counter, for loops that retry until they succeed
    (stream reconnects): ``next()`` after each failure, ``reset()`` after a success."""

    def __init__(
        self,
        *,
        base_s: float,
        cap_s: float,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        backoff_delay(1, base_s=base_s, cap_s=cap_s, factor=factor, jitter=jitter)  # validates
        self.base_s = base_s
        self.cap_s = cap_s
        self._factor = factor
        self._jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next(self) -> float:
        self.attempts += 1
        return backoff_delay(
            self.attempts,
            base_s=self.base_s,
            cap_s=self.cap_s,
            factor=self._factor,
            jitter=self._jitter,
            rng=self._rng,
        )

    def reset(self) -> None:
        self.attempts = 0
