"""The gateway's clock against its sensors': readings too far ahead are refused, unless the clock is behind.

Readings more than ``stream.max_future_s`` ahead of the gateway's clock are refused
(``future_timestamp``): one reading from a bad clock far in the future would otherwise make every
later reading of its asset look late. But a gateway's own clock can be the wrong one: a board
without a real-time clock boots at the time it last saved (or 1970) and stays there until NTP
answers, which on an isolated plant network may be never. Then every reading of every asset is
"in the future" and the gateway would hear nothing.

:class:`SensorClock` tells the two apart. When, over a whole period of ``PERIOD_S`` seconds, at
least ``MIN_REFUSED`` readings were refused as ahead and none was accepted, the gateway's clock is
taken to be behind by the smallest lead among them (a reading far in the future cannot set it:
the smallest lead is the honest sensors'), and the limit moves by that much. While readings are
accepted, the learned lead follows the smallest lead among them, so it shrinks back to zero
once the clock is set. A sender that floods future readings while honest sensors are heard
changes nothing (an accepted reading in the period blocks learning); while none is heard, it
can at most move the limit the way a bad clock would, and the stream rule already recovers an
asset from one far-future reading (``stream_reset``).
"""

from __future__ import annotations

import math

PERIOD_S = 60.0  # seconds of readings judged together
MIN_REFUSED = 20  # readings refused as ahead, with none accepted, before the gateway's clock is doubted


class SensorClock:
    """How far the sensors' clocks run ahead of the gateway's (0 unless learned); one thread only."""

    def __init__(self, max_future_s: float) -> None:
        """Trust the gateway's clock until a period says otherwise."""
        self.max_future_s = max_future_s
        self.lead_s = 0.0  # learned: the sensors' clocks are this far ahead of the gateway's
        self._period_end = -math.inf
        self._refused = 0
        self._accepted = 0
        self._min_refused_lead = math.inf
        self._min_accepted_lead = math.inf

    def limit(self, wall_now: float) -> float:
        """The latest reading time accepted now (unix seconds)."""
        return wall_now + self.lead_s + self.max_future_s

    def accepted(self, lead_s: float, mono_now: float) -> float | None:
        """A message was accepted whose newest reading is ``lead_s`` ahead of the gateway's clock.

        Returns the new learned lead when a period ended and it changed, else None.
        """
        out = self._roll(mono_now)
        self._accepted += 1
        if lead_s < self._min_accepted_lead:
            self._min_accepted_lead = lead_s
        return out

    def refused(self, lead_s: float, mono_now: float) -> float | None:
        """A message was refused as ``future_timestamp``, ``lead_s`` ahead of the gateway's clock."""
        out = self._roll(mono_now)
        self._refused += 1
        if lead_s < self._min_refused_lead:
            self._min_refused_lead = lead_s
        return out

    def _roll(self, mono_now: float) -> float | None:
        if mono_now < self._period_end:
            return None
        before = self.lead_s
        if self._accepted:  # honest readings were heard: the lead is at most their smallest
            self.lead_s = max(0.0, min(self.lead_s, self._min_accepted_lead))
        elif self._refused >= MIN_REFUSED:  # everything was ahead: the gateway's clock is behind
            self.lead_s = max(self.lead_s, self._min_refused_lead)
        self._period_end = mono_now + PERIOD_S
        self._refused = self._accepted = 0
        self._min_refused_lead = self._min_accepted_lead = math.inf
        return self.lead_s if self.lead_s != before else None
