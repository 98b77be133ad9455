"""Training report: a two-sample statistic of codes vs prior, and the report plot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def codes_vs_prior_mmd(codes: np.ndarray, prior: np.ndarray, max_n: int = 1000) -> float:
    """Unbiased squared MMD with an RBF kernel (median-distance bandwidth).

    Near 0 when the encoded codes follow the prior; larger is a worse match.
    Args are ``(n, latent_dim)`` arrays.
    """
    x = np.asarray(codes[:max_n], dtype=np.float64)
    y = np.asarray(prior[:max_n], dtype=np.float64)
    if x.shape[0] < 2 or y.shape[0] < 2:
        return float("nan")
    both = np.concatenate([x, y])
    sq = (both ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * both @ both.T, 0.0)  # no (n, n, D) temporary
    np.fill_diagonal(d2, 0.0)
    bandwidth = np.median(d2[np.triu_indices_from(d2, k=1)])
    k = np.exp(-d2 / max(bandwidth, 1e-12))
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                 - 2 * kxy.mean())


def write_latent_plot(det: Any, data: Any, path: Path) -> None:
    """The training report PNG of a fitted detector: losses, and its codes of ``data`` against the prior."""
    from edge_aae.core.windows import series_windows

    windows, _ = series_windows(data, det.config_.window_len, max(1, data.n_rows // 2000))
    codes = det.encode(windows)
    prior = det.prior_samples(codes.shape[0])

    def first_two(z: np.ndarray) -> np.ndarray:
        return z[:, :2] if z.shape[1] > 1 else np.c_[z, np.zeros_like(z)]

    plot_training_report(path, det.report_, first_two(codes), first_two(prior))


def plot_training_report(path: Path, report: dict[str, Any], codes: np.ndarray, prior: np.ndarray) -> None:
    """PNG: losses over epochs (left), first two latent dimensions of codes vs prior (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = report["history"]
    epochs = [h["epoch"] for h in hist]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(epochs, [h["recon_loss"] for h in hist], label="reconstruction (train)")
    ax1.plot(epochs, [h["val_loss"] for h in hist], label="reconstruction (validation)")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("MSE (scaled units)")
    if any(np.isfinite(h["disc_acc"]) for h in hist):
        ax1b = ax1.twinx()
        ax1b.plot(epochs, [h["disc_acc"] for h in hist], color="tab:red", ls="--", label="discriminator acc.")
        ax1b.set_ylim(0, 1)
        ax1b.set_ylabel("discriminator accuracy")
        ax1b.legend(loc="upper right")
    ax1.axvline(report["best_epoch"], color="grey", lw=0.8, ls=":")
    ax1.legend(loc="upper left")
    ax1.set_title("losses (dotted: best epoch kept)")
    ax2.scatter(prior[:, 0], prior[:, 1], s=4, alpha=0.3, label="prior samples")
    ax2.scatter(codes[:, 0], codes[:, 1], s=4, alpha=0.3, label="codes of validation windows")
    ax2.set_xlabel("z[0]")
    ax2.set_ylabel("z[1]")
    ax2.legend(loc="upper right", markerscale=3)
    ax2.set_title(f"latent space (MMD² codes vs prior = {report['mmd_codes_vs_prior']:.4f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
