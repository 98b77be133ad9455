"""TensorBoard scalars per epoch (``train --log-dir DIR``), when tensorboard is installed.

The run's ``report.json`` stays the source of truth; this is for watching a long run live
(``tensorboard --logdir DIR``) and comparing runs side by side.

Scalars: ``loss/reconstruction``, ``loss/validation``, ``loss/discriminator``, ``loss/generator``,
``adversarial/discriminator_accuracy``, ``adversarial/mmd2_codes_vs_prior`` (validation codes against
prior samples; lower is a closer match), ``validation/score_p99`` (99th percentile of the validation
windows' reconstruction error) and ``time/epoch_seconds``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)


class EpochLogger:
    """Writes one set of scalars per epoch; a no-op (after one warning) without tensorboard."""

    def __init__(self, log_dir: Path) -> None:
        """Open a writer on ``log_dir``."""
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("--log-dir %s: tensorboard is not installed (pip install tensorboard); "
                        "no scalars are written, report.json has the history", log_dir)
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    @torch.no_grad()
    def epoch(self, stats: Any, encoder: torch.nn.Module, prior: Any, x_val: torch.Tensor,
              decoder: torch.nn.Module | None = None) -> None:
        """Scalars of one :class:`~edge_aae.train.loop.EpochStats`, plus the latent match and val score."""
        if self.writer is None:
            return
        from edge_aae.train.report import codes_vs_prior_mmd

        step = stats.epoch
        w = self.writer
        for tag, value in (("loss/reconstruction", stats.recon_loss), ("loss/validation", stats.val_loss),
                           ("loss/discriminator", stats.disc_loss), ("loss/generator", stats.gen_loss),
                           ("adversarial/discriminator_accuracy", stats.disc_acc),
                           ("time/epoch_seconds", stats.seconds)):
            if isinstance(value, float) and math.isfinite(value):
                w.add_scalar(tag, value, step)
        x = x_val[:1024]
        if x.shape[0] > 1:
            was = encoder.training
            encoder.eval()
            codes = encoder(x).float()
            encoder.train(was)
            devices = [x.device.index or 0] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # the training run's random stream is left as it was
                samples = prior.sample(codes.shape[0])
            mmd = codes_vs_prior_mmd(codes.cpu().numpy(), samples.cpu().numpy())
            w.add_scalar("adversarial/mmd2_codes_vs_prior", mmd, step)
            if decoder is not None:
                err = (decoder(codes) - x).pow(2).mean(dim=(1, 2))
                w.add_scalar("validation/score_p99", float(torch.quantile(err, 0.99)), step)
        w.flush()

    def close(self) -> None:
        """Flush and close the writer."""
        if self.writer is not None:
            self.writer.close()
