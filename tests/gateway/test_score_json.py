"""Score messages written from a template are the text json.dumps gives for the same dict."""

from __future__ import annotations

import json

import numpy as np

from edge_aae.gateway.daemon import Due
from edge_aae.gateway.score_json import ScoreMessages


def test_template_matches_json_dumps_for_awkward_values():
    channels = ["flow", 'quote"d', "ünï", "back\\slash"]
    model = {"name": "pump model", "version": "2026.12.05"}
    enc = ScoreMessages("pump/1 \"x\"", channels, 1.25, model)
    cases = [
        (1.7e9 + 0.5, 0.123456, -0.5, [0.1, 2.0, 1e-7, 3.4e38]),
        (1700000000.0, 12.0, None, [0.0, -0.0, 1e300, 5.0]),
        (1.0, float("nan"), float("inf"), [float("-inf"), 1.0, 2.0, 3.0]),
    ]
    for ts, score, latent, cs in cases:
        want = json.dumps({"ts": ts, "asset": "pump/1 \"x\"", "score": score, "threshold": 1.25, "latent_score": latent,
                           "channel_scores": dict(zip(channels, cs, strict=True)), "model": model})
        assert enc.encode(ts, score, latent, cs) == want
        assert json.loads(enc.encode(ts, score, latent, cs))["channel_scores"].keys() == set(channels)


def test_due_gathers_single_windows_per_asset_in_order():
    due = Due()
    w = [np.full((2, 1), i, np.float32) for i in range(6)]
    due.add_one("a", 1.0, w[0])
    due.add_one("b", 1.0, w[1])
    due.add_one("a", 2.0, w[2])
    due.add("a", np.array([3.0, 4.0]), np.stack([w[3], w[4]]))  # a batch block closes a's open block
    due.add_one("a", 5.0, w[5])
    assert due.windows == 6
    blocks = due.blocks
    assert [(a, ts.tolist(), x[:, 0, 0].tolist()) for a, ts, x in blocks] == [
        ("a", [1.0, 2.0], [0.0, 2.0]), ("b", [1.0], [1.0]), ("a", [3.0, 4.0], [3.0, 4.0]), ("a", [5.0], [5.0])]
    due.clear()
    assert not due
    assert due.windows == 0
