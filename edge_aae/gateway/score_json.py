"""Score messages (``.../anomaly/ASSET/score``) written from a template, the same text ``json.dumps`` gives.

A gateway fed one reading per message publishes one score per reading: building a dict per
window and encoding it was a measurable share of the daemon's time. The parts that do not
change between windows (asset, threshold, channel names, model) are encoded once per asset
and model; per window only the numbers are written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

_REPR = float.__repr__


def _number(x: float | None) -> str:
    """One JSON number as ``json.dumps`` writes it (``null`` for None; NaN and infinities as json writes them)."""
    if x is None:
        return "null"
    if x - x == 0:  # finite
        return _REPR(x)
    return json.dumps(x)


class ScoreMessages:
    """Encodes the score messages of one asset and one model.

    The message (keys in this order; numbers rounded by the caller):
    ``{"ts", "asset", "score", "threshold", "latent_score", "channel_scores": {channel: score}, "model"}``.
    """

    def __init__(self, asset: str, channels: list[str], threshold: float, model: dict[str, str]) -> None:
        """Encode the fixed parts once."""
        self.threshold = threshold
        self._asset = json.dumps(asset)
        self._threshold = json.dumps(threshold)
        self._model = json.dumps(model)
        self._channels = [json.dumps(c) + ": " for c in channels]

    def encode(self, ts: float, score: float, latent: float | None, channel_scores: list[float]) -> str:
        """One message; ``channel_scores`` in the model's channel order."""
        body = ", ".join([k + _number(v) for k, v in zip(self._channels, channel_scores, strict=True)])
        return (f'{{"ts": {_number(ts)}, "asset": {self._asset}, "score": {_number(score)}, '
                f'"threshold": {self._threshold}, "latent_score": {_number(latent)}, '
                f'"channel_scores": {{{body}}}, "model": {self._model}}}')

    def encode_many(self, ts: list[float], score: list[float], latent: list[float | None],
                    channel_scores: list[list[float]]) -> Iterator[str]:
        """One message per window (lists of equal length, as ``ndarray.tolist()`` gives them)."""
        for t, s, la, cs in zip(ts, score, latent, channel_scores, strict=True):
            yield self.encode(t, s, la, cs)
