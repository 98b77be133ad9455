"""``edge-aae bench drift``: the gateway's drift monitor on a stream that slowly leaves the training range.

A fresh normal series of the synthetic pump (another seed than training, its start-up transient
cut off), scored by a bundle exactly as the gateway scores it, fed to the gateway's
:class:`~edge_aae.gateway.drift.DriftMonitor` window by window. Two streams: the series as it is
(stationary), and the same series with one channel's level ramping up by ``ramp`` training standard
deviations over its length. The monitor should say ``drifting`` before the windows over the
threshold pile up, and never leave ``ok`` on the stationary stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.bench.common import markdown_table


@dataclass
class DriftRun:
    """What one stream did: states over time and the windows over the threshold."""

    name: str
    ts: np.ndarray  # (n,) window index
    over: np.ndarray  # (n,) bool, window over the threshold
    states: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)  # (window, new state, figures)

    def first(self, state: str) -> int | None:
        """Window at which ``state`` was first entered."""
        return next((w for w, s, _ in self.states if s == state), None)

    def over_before(self, window: int | None) -> int:
        """Windows over the threshold before ``window`` (all of them if None)."""
        return int(self.over[: len(self.over) if window is None else window].sum())


def scenario(bundle: Path, channel: str = "current_a", ramp: float = 4.0, seed: int = 5,
             rows: int = 12_000, batch: int = 20) -> tuple[DriftRun, DriftRun]:
    """The stationary and the drifting stream through the bundle and the monitor (default settings)."""
    from edge_aae.core.data import assemble_series
    from edge_aae.core.windows import series_windows
    from edge_aae.gateway.config import MonitorConfig
    from edge_aae.gateway.drift import DriftMonitor, Reference
    from edge_aae.gateway.scorer import BundleScorer
    from edge_aae.train import synth

    scorer = BundleScorer(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    base = synth.generate(seed=seed, train_rows=rows + 2000, test_rows=4800)
    x, ts = base.train[2000:], base.train_ts[2000:]  # past the pump's start-up transient
    j = base.channels.index(channel)
    runs = []
    for name, r in (("stationary", 0.0), (f"{channel} +{ramp:g} sd", ramp)):
        values = x.copy()
        values[:, j] += np.linspace(0.0, r, len(values)) * x[:, j].std()
        data = assemble_series("stream", list(base.channels), ts, values, None)
        res = scorer.score(data)
        windows, _ = series_windows(data, manifest["window_len"])
        mon = DriftMonitor(MonitorConfig(), Reference.from_manifest(manifest.get("monitor"), manifest["target_far"],
                                                                     len(base.channels)), list(base.channels))
        run = DriftRun(name, np.arange(res.score.size), res.score > res.threshold)
        for i in range(0, res.score.size, batch):
            if mon.update(run.over[i:i + batch], res.latent_score[i:i + batch],
                          windows[i:i + batch].mean(axis=1), float(i)):
                run.states.append((i + batch, mon.state, dict(mon.last_figures)))
        runs.append(run)
    return runs[0], runs[1]


def plot(runs: tuple[DriftRun, DriftRun], path: Path) -> None:
    """Drift state against time for both streams, with the windows over the threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
    level = {"ok": 0, "drifting": 1, "retrain": 2}
    for ax, run in zip(axes, runs, strict=True):
        steps: list[tuple[int, str]] = [(0, "ok")] + [(w, s) for w, s, _ in run.states] + [(len(run.over), "")]
        xs: list[int] = []
        ys: list[int] = []
        for (a, s), (b, _) in zip(steps[:-1], steps[1:], strict=True):
            xs += [a, b]
            ys += [level[s], level[s]]
        ax.plot(xs, ys, color="tab:blue", lw=2, label="drift state")
        hits = np.flatnonzero(run.over)
        ax.scatter(hits, np.full(hits.size, -0.35), marker="|", color="tab:red", s=30,
                   label=f"window over the threshold ({hits.size})")
        ax.set_yticks([0, 1, 2], ["ok", "drifting", "retrain"])
        ax.set_ylim(-0.6, 2.4)
        ax.set_title(run.name, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("window (1 s each)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_drift_bench(bundle: Path, out: Path) -> str:
    """Both streams, the table and the plot (``out/drift.png``); returns the section body."""
    rows: list[list[object]] = []
    plotted: list[DriftRun] = []
    for channel in ("current_a", "pressure_bar", "motor_temp_c"):
        stationary, drifting = scenario(bundle, channel)
        if not plotted:
            plotted = [stationary, drifting]
        for run in (stationary, drifting) if channel == "current_a" else (drifting,):
            d, r = run.first("drifting"), run.first("retrain")
            why = run.states[0][2] if run.states else {}
            rows.append([run.name, "-" if d is None else f"{d:,}", "-" if r is None else f"{r:,}",
                         f"{run.over_before(d):,}" if d is not None else "-", f"{run.over_before(None):,}",
                         _why(why)])
    plot((plotted[0], plotted[1]), out / "drift.png")
    table = markdown_table(["stream", "drifting at window", "retrain at window", "over threshold before drifting",
                            "over threshold in all", "what moved first"], rows)
    return (f"{table}\n\n![drift state against time]({(out / 'drift.png').as_posix()})\n\n"
            "A fresh normal series of the synthetic pump (seed 5, 12,000 windows after its start-up), scored by "
            "the bundle as the gateway scores it, through the gateway's drift monitor with the default "
            "`[monitor]` settings; the drifting streams add a level ramp of 4 training standard deviations "
            "to one channel over the series. `motor_temp_c` is a channel the preset scores by shape: the model "
            "does not see its level at all, the monitor's training range does.")


def _why(f: dict[str, Any]) -> str:
    if not f:
        return "-"
    parts = []
    if f.get("alert_rate_sustained", 0) > 0:  # what the state is judged on (bursts alone leave it at 0)
        parts.append(f"sustained alert rate {f['alert_rate_sustained']:.3f} (target {f['target_far']:g})")
    if f.get("latent_median") is not None:
        parts.append(f"latent median {f['latent_median']:.2f}")
    if f.get("outside_share"):
        parts.append("outside range: " + ", ".join(f"{c} {s:.2f}" for c, s in f["outside_share"].items()))
    return "; ".join(parts)
