"""A token bucket: at most ``rate`` events per second on average, bursts up to ``rate``."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """Thread-safe; :meth:`take` says whether one more event may go now."""

    def __init__(self, rate: float) -> None:
        """Start full."""
        self.rate = rate
        self._tokens = rate
        self._refill = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend a token if there is one; False when over the rate."""
        now = time.monotonic()
        with self._lock:
            self._tokens = min(self.rate, self._tokens + (now - self._refill) * self.rate)
            self._refill = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True
