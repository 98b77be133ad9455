"""The AAE fit loop.

Per batch, two steps:

1. the autoencoder (encoder and decoder, one Adam optimizer) on the reconstruction error plus
   ``adversarial_weight`` times the generator loss (the discriminator should take the codes for
   prior samples). One optimizer for both terms makes the weight a real trade-off: with a
   separate generator optimizer, Adam's step normalization gives the adversarial phase full-size
   steps whatever its weight, and on the benchmarks that pulled reconstruction apart within a few
   epochs (early stopping then kept an epoch-2 model);
2. the discriminator, on prior samples against the (detached) codes.

Windows are cut per batch from the scaled series (:class:`WindowSource`); every epoch draws
``windows_per_epoch`` of them afresh. Under ``torchrun`` (:mod:`edge_aae.train.distributed`) each
rank takes its share of every batch and DDP averages the gradients.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_aae.core.errors import EdgeAAEError
from edge_aae.train import distributed
from edge_aae.train.config import TrainConfig
from edge_aae.train.model import Discriminator, LatentPrior, build_autoencoder
from edge_aae.train.tracking import EpochLogger
from edge_aae.train.window_source import WindowSource

log = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """Mean losses of one epoch; ``disc_acc`` is the discriminator's accuracy (0.5 = fooled)."""

    epoch: int
    recon_loss: float
    val_loss: float
    disc_loss: float
    gen_loss: float
    disc_acc: float
    seconds: float


@dataclass
class TrainResult:
    """Trained networks (best validation epoch) and what happened on the way."""

    encoder: nn.Module
    decoder: nn.Module
    prior: LatentPrior
    discriminator: Discriminator
    history: list[EpochStats]
    best_epoch: int
    device: str
    amp: bool
    warnings: list[str] = field(default_factory=list)

    def history_dicts(self) -> list[dict[str, float]]:
        """History as JSON-ready dicts."""
        return [asdict(h) for h in self.history]


class TrainingDiverged(EdgeAAEError):
    """Losses became non-finite before any usable epoch."""



def use_threads(n: int) -> None:
    """Set torch's intra-op threads to ``n`` (0: leave torch's default)."""
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)

def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; under torchrun, this process's own GPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise EdgeAAEError("--device cuda: no CUDA device is available (try --device auto)")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", distributed.current().local_rank)
    return torch.device("cpu")


CHECKPOINT_FORMAT = 1


def train_aae(train_windows: WindowSource | np.ndarray, val_windows: np.ndarray, config: TrainConfig,
              progress: bool = False, checkpoint: Path | None = None, resume: bool = False,
              log_dir: Path | None = None) -> TrainResult:
    """Fit encoder, decoder and discriminator on scaled windows.

    Args:
        train_windows: the training windows, cut on the fly from a scaled series, or stacked
            ``(n, window_len, C)`` float32; each epoch draws ``config.windows_per_epoch`` of them.
        val_windows: ``(m, window_len, C)`` float32, later in time than the training ones.
        config: hyperparameters; ``adversarial_weight == 0`` trains the plain autoencoder.
        progress: show a progress bar with the losses on stderr.
        checkpoint: after every epoch, everything needed to continue (networks, optimizers,
            random states, history, the best epoch so far) is written here, atomically.
        resume: continue from ``checkpoint`` instead of starting over. With the same windows
            and config, the result is the one an uninterrupted run reaches (on the CPU).
        log_dir: TensorBoard scalars per epoch here, when tensorboard is installed.

    Raises:
        EdgeAAEError: ``resume`` without a readable checkpoint, or one from other settings.

    """
    device = resolve_device(config.device)
    ddp = distributed.current()
    use_threads(config.threads)
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)  # the epoch order: the same on every rank
    source = (train_windows if isinstance(train_windows, WindowSource)
              else WindowSource.from_windows(train_windows, device))
    if source.device != device:
        raise EdgeAAEError(f"training windows live on {source.device}, training runs on {device}")
    n_channels = source.shape[2]
    encoder, decoder = build_autoencoder(config.arch, config.window_len, n_channels,
                                         config.hidden, config.latent_dim)
    prior = LatentPrior(config.prior, config.latent_dim, config.n_components)
    disc = Discriminator(config.latent_dim)
    for m in (encoder, decoder, prior, disc):
        m.to(device)
    enc_t: nn.Module = encoder  # what the training steps call (DDP-wrapped under torchrun)
    dec_t: nn.Module = decoder
    disc_t: nn.Module = disc
    if ddp.active:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        enc_t, dec_t, disc_t = (DistributedDataParallel(m, device_ids=ids) for m in (encoder, decoder, disc))
    adversarial = config.adversarial_weight > 0
    opt_ae = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=config.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.disc_lr)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    bce = nn.BCEWithLogitsLoss()

    start_epoch = 1
    history: list[EpochStats] = []
    best_state: dict[str, dict[str, torch.Tensor]] | None = None
    best_val, best_epoch, stale = float("inf"), 0, 0
    nets: dict[str, Any] = {"encoder": encoder, "decoder": decoder, "disc": disc, "opt_ae": opt_ae,
                            "opt_d": opt_d, "grad_scaler": scaler}
    if resume:
        ck = _read_checkpoint(checkpoint, config, source.shape)
        for name, obj in nets.items():
            obj.load_state_dict(ck[name])
        torch.set_rng_state(ck["torch_rng"])
        gen.set_state(ck["gen_rng"])
        history = [EpochStats(**h) for h in ck["history"]]
        best_state, best_val, best_epoch, stale = ck["best_state"], ck["best_val"], ck["best_epoch"], ck["stale"]
        start_epoch = ck["epoch"] + 1
        log.info("resuming after epoch %d (best so far: epoch %d)", ck["epoch"], best_epoch)

    x_val = torch.from_numpy(val_windows).to(device)
    n = len(source)
    n_batches = max(1, min(n, config.windows_per_epoch) // config.batch_size)
    # each rank takes its share of every batch: the global batch is the single-process one
    per_rank = max(1, config.batch_size // ddp.world)
    tracker = EpochLogger(log_dir) if log_dir is not None and ddp.is_main else None
    warnings: list[str] = []
    if history and stale >= config.patience:  # a run that had stopped early, resumed: nothing to do
        start_epoch = config.epochs + 1
    stopped = False

    bar = None
    if progress and ddp.is_main:
        from tqdm import tqdm
        bar = tqdm(total=config.epochs, initial=start_epoch - 1, desc="train", unit="epoch", leave=True)

    def step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter]) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(params, config.grad_clip)
        scaler.step(opt)
        scaler.update()

    ae_params = [*encoder.parameters(), *decoder.parameters()]
    for epoch in range(start_epoch, config.epochs + 1):
        t0 = time.monotonic()
        encoder.train()
        decoder.train()
        order = torch.randperm(n, generator=gen)[: n_batches * config.batch_size].to(device)
        sums = np.zeros(4)
        for b in range(n_batches):
            first = b * config.batch_size + ddp.rank * per_rank
            x = source.batch(order[first:first + per_rank])
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                z = enc_t(x)
                loss_r = (dec_t(z).float() - x).pow(2).mean()
                loss = loss_r
                if adversarial:  # the encoder also tries to pass its codes off as prior samples
                    # (the bare discriminator: its gradients from this step are discarded)
                    logits_gen = disc(z.float()).float()
                    loss_g = bce(logits_gen, torch.ones_like(logits_gen))
                    loss = loss_r + config.adversarial_weight * loss_g
            step(opt_ae, loss, ae_params)
            sums[0] += loss_r.item()
            if not adversarial:
                continue
            # global RNG, seeded above; every rank draws the whole batch's prior samples and keeps
            # its share, so the group sees exactly the samples a single process would
            z_real = prior.sample(per_rank * ddp.world)[ddp.rank * per_rank:][:x.shape[0]]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits_real, logits_fake = disc_t(torch.cat([z_real, z.detach().float()])).split(x.shape[0])
                loss_d = bce(logits_real.float(), torch.ones_like(logits_real, dtype=torch.float32)) + \
                    bce(logits_fake.float(), torch.zeros_like(logits_fake, dtype=torch.float32))
            step(opt_d, loss_d, list(disc.parameters()))
            acc = 0.5 * ((logits_real > 0).float().mean() + (logits_fake < 0).float().mean())
            sums[1] += loss_d.item()
            sums[2] += loss_g.item()
            sums[3] += acc.item()
        if ddp.active:
            sums = distributed.all_reduce_sum(torch.as_tensor(sums, device=device)).cpu().numpy() / ddp.world
        means = sums / n_batches
        val_loss = _val_loss(encoder, decoder, x_val, ddp)
        stats = EpochStats(epoch, float(means[0]), val_loss, float(means[1]), float(means[2]),
                           float(means[3]) if adversarial else float("nan"), time.monotonic() - t0)
        history.append(stats)
        log.debug("epoch %d: %s", epoch, stats)
        if tracker is not None:
            tracker.epoch(stats, encoder, prior, x_val, decoder)
        if bar is not None:
            bar.set_postfix(rec=f"{stats.recon_loss:.4f}", val=f"{val_loss:.4f}",
                            d_acc=f"{stats.disc_acc:.2f}" if adversarial else "-")
            bar.update(1)
        if not all(np.isfinite([stats.recon_loss, val_loss, stats.disc_loss, stats.gen_loss])):
            msg = f"training diverged at epoch {epoch}: non-finite loss; keeping epoch {best_epoch}"
            log.warning(msg)
            warnings.append(msg)
            if best_state is None:
                raise TrainingDiverged(msg + " (no finite epoch: lower --lr or --adversarial-weight)")
            break
        if val_loss < best_val - 1e-6:
            best_val, best_epoch, stale = val_loss, epoch, 0
            best_state = {"encoder": copy.deepcopy(encoder.state_dict()),
                          "decoder": copy.deepcopy(decoder.state_dict()),
                          "disc": copy.deepcopy(disc.state_dict())}
        else:
            stale += 1
            stopped = stale >= config.patience
        if checkpoint is not None and ddp.is_main:
            _write_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config.to_dict(),
                "windows_shape": list(source.shape),
                **{name: obj.state_dict() for name, obj in nets.items()},
                "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(),
                "history": [asdict(h) for h in history], "best_state": best_state, "best_val": best_val,
                "best_epoch": best_epoch, "stale": stale})
        if stopped:
            log.info("early stop at epoch %d; best validation loss %.5f at epoch %d", epoch, best_val, best_epoch)
            break
    if bar is not None:
        bar.close()
    if tracker is not None:
        tracker.close()
    assert best_state is not None
    encoder.load_state_dict(best_state["encoder"])
    decoder.load_state_dict(best_state["decoder"])
    disc.load_state_dict(best_state["disc"])
    encoder.eval()
    decoder.eval()
    warnings.extend(_health_warnings(history, encoder, x_val, adversarial))
    for w in warnings[-3:]:
        log.warning(w)
    return TrainResult(encoder, decoder, prior, disc, history, best_epoch, str(device), use_amp, warnings)


def _write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, then rename: an interruption never leaves half a checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _read_checkpoint(path: Path | None, config: TrainConfig, shape: tuple[int, ...]) -> dict[str, Any]:
    """The checkpoint to resume from, checked against this run's settings and windows."""
    if path is None or not path.is_file():
        raise EdgeAAEError(f"{path}: no checkpoint to resume from")
    try:
        ck: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged file: torch raises many kinds
        raise EdgeAAEError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise EdgeAAEError(f"{path}: not a checkpoint of this version of edge-aae")
    theirs, ours = ck["config"], config.to_dict()
    differ = sorted(k for k in ours if k not in ("epochs", "patience", "threads") and theirs.get(k) != ours[k])
    if differ:
        raise EdgeAAEError(f"{path}: the checkpoint was trained with other settings ({', '.join(differ)}); "
                           "resume with the run's own settings")
    if list(shape) != ck["windows_shape"]:
        raise EdgeAAEError(f"{path}: the checkpoint was trained on {ck['windows_shape'][0]} windows, this data "
                           f"gives {shape[0]}: resume with the same data")
    return ck


@torch.no_grad()
def _val_loss(encoder: nn.Module, decoder: nn.Module, x_val: torch.Tensor,
              ddp: distributed.DistContext | None = None) -> float:
    """Mean squared reconstruction error of the validation windows (each rank its share, summed)."""
    encoder.eval()
    decoder.eval()
    if ddp is not None and ddp.active:
        x_val = x_val[ddp.rank::ddp.world]
    total, count = 0.0, 0
    for i in range(0, x_val.shape[0], 1024):
        x = x_val[i:i + 1024]
        total += float((decoder(encoder(x)) - x).pow(2).mean(dim=(1, 2)).sum())
        count += x.shape[0]
    if ddp is not None and ddp.active:
        total, count = distributed.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64,
                                                               device=x_val.device)).tolist()
    return total / max(count, 1)


@torch.no_grad()
def _health_warnings(history: list[EpochStats], encoder: nn.Module, x_val: torch.Tensor,
                     adversarial: bool) -> list[str]:
    """Signs of a collapsed or diverged AAE run, as human-readable warnings."""
    out = []
    if len(history) >= 3 and history[-1].val_loss > 2 * min(h.val_loss for h in history):
        out.append("validation loss rose to more than twice its best: the run diverged late "
                   "(the best epoch is kept); consider a lower --lr")
    if not adversarial:
        return out
    last = [h.disc_acc for h in history[-3:]]
    if min(last) > 0.95:
        out.append(f"discriminator accuracy {min(last):.2f}+ in the last epochs: the encoder does not "
                   "match the prior (adversarial collapse); latent scores are unreliable")
    codes = encoder(x_val[:2048]).float()
    spread = float(codes.std(0).mean()) if codes.shape[0] > 1 else 1.0
    if spread < 0.05:
        out.append(f"latent codes collapsed (mean per-dimension std {spread:.3g}): "
                   "every window maps to nearly one code")
    return out
