"""The adversarial autoencoder's networks and the scoring graph (torch).

Shapes: windows are ``(batch, window_len, n_channels)`` throughout; codes are
``(batch, latent_dim)``. :class:`ScoreGraph` turns a raw window into scores with
every step (scaling, reconstruction, normalization) inside one module, so the
exported ONNX graph computes exactly what training-side scoring computes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from edge_aae.train.config import SCORE_STATS


class LatentPrior(nn.Module):
    """The prior the discriminator pushes codes towards.

    ``gaussian``: N(0, I). ``mixture``: K equally weighted Gaussians (sd 1) with
    means at distance 3 on the coordinate axes (+e_0, +e_1, ..., -e_0, ...).
    """

    def __init__(self, kind: str, latent_dim: int, n_components: int = 4) -> None:
        """Fix the component means as a buffer."""
        super().__init__()
        self.kind = kind
        self.latent_dim = latent_dim
        k = 1 if kind == "gaussian" else n_components
        means = torch.zeros(k, latent_dim)
        if kind == "mixture":
            for i in range(k):
                means[i, i % latent_dim] = 3.0 * (-1.0 if (i // latent_dim) % 2 else 1.0)
        self.means: torch.Tensor
        self.register_buffer("means", means)
        self.std = 1.0  # every component has unit variance

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` codes drawn from the prior: ``(n, latent_dim)``."""
        means: torch.Tensor = self.means
        comp = torch.randint(0, means.shape[0], (n,), generator=generator, device=means.device)
        noise = torch.randn(n, means.shape[1], generator=generator, device=means.device)
        return means[comp] + self.std * noise

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        """Negative log density of codes under the prior: ``(batch, D) -> (batch,)``."""
        means: torch.Tensor = self.means
        d = self.latent_dim
        diff = z.unsqueeze(1) - means.unsqueeze(0)  # (batch, K, D)
        log_comp = -0.5 * (diff / self.std).pow(2).sum(-1)  # (batch, K)
        const = d * math.log(self.std * math.sqrt(2 * math.pi)) + math.log(means.shape[0])
        return const - torch.logsumexp(log_comp, dim=1)


class ConvEncoder(nn.Module):
    """Conv1d over time: ``(B, L, C) -> (B, latent_dim)``."""

    def __init__(self, window_len: int, n_channels: int, hidden: int, latent_dim: int) -> None:
        """Three conv layers (two of stride 2), then a linear map to the code."""
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(n_channels, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 5, stride=2, padding=2), nn.ReLU(),
        )
        reduced = math.ceil(math.ceil(window_len / 2) / 2)
        self.head = nn.Linear(hidden * reduced, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode scaled windows."""
        h = self.convs(x.transpose(1, 2))  # (B, hidden, ceil(L/4))
        return self.head(h.flatten(1))


class ConvDecoder(nn.Module):
    """``(B, latent_dim) -> (B, L, C)`` via a linear map to full length and two convs."""

    def __init__(self, window_len: int, n_channels: int, hidden: int, latent_dim: int) -> None:
        """Layers sized for the window."""
        super().__init__()
        self.window_len = window_len
        self.hidden = hidden
        self.head = nn.Sequential(nn.Linear(latent_dim, hidden * window_len), nn.ReLU())
        self.convs = nn.Sequential(
            nn.Conv1d(hidden, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, n_channels, 5, padding=2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode codes to scaled windows."""
        h = self.head(z).reshape(-1, self.hidden, self.window_len)  # (B, hidden, L)
        return self.convs(h).transpose(1, 2)


class MLPEncoder(nn.Module):
    """Flattened window through two hidden layers: ``(B, L, C) -> (B, latent_dim)``."""

    def __init__(self, window_len: int, n_channels: int, hidden: int, latent_dim: int) -> None:
        """Widths 4*hidden and 2*hidden."""
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(1), nn.Linear(window_len * n_channels, 4 * hidden), nn.ReLU(),
            nn.Linear(4 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, latent_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode scaled windows."""
        return self.net(x)


class MLPDecoder(nn.Module):
    """Mirror of :class:`MLPEncoder`: ``(B, latent_dim) -> (B, L, C)``."""

    def __init__(self, window_len: int, n_channels: int, hidden: int, latent_dim: int) -> None:
        """Widths 2*hidden and 4*hidden."""
        super().__init__()
        self.window_len = window_len
        self.n_channels = n_channels
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, 4 * hidden), nn.ReLU(),
            nn.Linear(4 * hidden, window_len * n_channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode codes to scaled windows."""
        return self.net(z).reshape(-1, self.window_len, self.n_channels)


class Discriminator(nn.Module):
    """Tells prior samples (logit > 0) from encoded codes: ``(B, D) -> (B,)``."""

    def __init__(self, latent_dim: int, hidden: int = 64) -> None:
        """Two hidden layers with LeakyReLU."""
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.net(z).squeeze(-1)


def build_autoencoder(arch: str, window_len: int, n_channels: int, hidden: int,
                      latent_dim: int) -> tuple[nn.Module, nn.Module]:
    """Encoder and decoder of the named architecture (``conv`` or ``mlp``)."""
    if arch == "conv":
        return (ConvEncoder(window_len, n_channels, hidden, latent_dim),
                ConvDecoder(window_len, n_channels, hidden, latent_dim))
    if arch == "mlp":
        return (MLPEncoder(window_len, n_channels, hidden, latent_dim),
                MLPDecoder(window_len, n_channels, hidden, latent_dim))
    raise ValueError(f"unknown architecture {arch!r}")


def power_mean_norm(ratio: torch.Tensor, power: int) -> torch.Tensor:
    """``(sum_c ratio_c ** power) ** (1 / power)`` over the last axis of ``(B, C)`` non-negative ratios.

    Order 2 is one ``ReduceL2``; order 4 is the ``ReduceL2`` of the squares, its square root,
    with the ratios held at :data:`RATIO_CAP` first so that their fourth powers stay finite.
    """
    if power == 2:
        return torch.linalg.vector_norm(ratio, dim=-1)
    r = ratio.clamp(max=RATIO_CAP)
    return torch.linalg.vector_norm(r * r, dim=-1).sqrt()


def power_mean(ratio: np.ndarray, power: int) -> np.ndarray:
    """NumPy twin of :func:`power_mean_norm` divided by ``C ** (1 / power)``: the power mean itself."""
    r = np.asarray(ratio, dtype=np.float64)
    if power != 2:  # the graph holds the ratios at the cap for the fourth power only
        r = np.minimum(r, RATIO_CAP)
    return np.asarray((r ** power).mean(axis=-1) ** (1.0 / power))


def tail_weights(window_len: int, score_tail: float) -> np.ndarray:
    """Time weights of the reconstruction error, summing to 1, largest on the last sample.

    ``w_t ∝ exp(-(window_len - 1 - t) / (score_tail * window_len))``: the score
    of a window mostly reflects its recent samples, the time it is reported at.
    """
    age = np.arange(window_len)[::-1].astype(np.float64)
    w = np.exp(-age / (score_tail * window_len))
    return w / w.sum()


def time_weight_span(window_len: int, score_tail: float, stride: int = 1) -> float:
    """How many consecutive windows one window's score is correlated with: ``1 / sum(w^2) / stride``, at least 1.

    The effective number of samples the time weights average over; overlapping windows' scores
    count as one independent observation per this many windows.
    """
    w = tail_weights(window_len, score_tail)
    return max(1.0, 1.0 / float((w ** 2).sum()) / stride)


BLAME_EXPONENT = 0.75
"""Contributions are ``e_c² / m_c ** BLAME_EXPONENT`` (error score; see :class:`ScoreGraph`).

1.0 (each channel's error over its own normal error) ranked the channels ASD's operators named
worse (seed 0 / 1: HitRate@150 % 0.837 / 0.841) than 0.75 (0.870 / 0.879), which also led on
HitRate@100 % and NDCG@100/150 % at both seeds; 0.5 led HitRate@150 % (0.881 / 0.885) but fell
behind 1.0 on NDCG@100 %. On the synthetic pump (8 channels) 0.75 and 1.0 rank alike; with 16
derived channels that carry a pump channel's fault on (``synth --channels 24``, seeds 0-2) 1.0
ranks the faulted pump channel higher (HitRate@150 % 0.59 against 0.50 at 0.75).
"""

SCORE_POWER = 4
"""The error score's reconstruction part is the power mean of order ``SCORE_POWER`` over channels of ``e_c² / m_c``.

Order 2 (the root mean square, runs before this constant; their ``model.json`` has no
``score_power`` and they keep it) lets a fault in one or two of many channels be diluted by the
others; the maximum (order infinity) ranks on one channel's noise alone. Order 4 lies between:
on ASD (12 entities, seeds 0-2, the same models) order 2 -> 4 raised mean AUPRC by 0.005-0.010
for the AAE and the plain AE alike; on the synthetic pump (8 channels) window AUROC did not fall
and recall of drifts and spikes at the default threshold rose (see BENCHMARKS.md). F1 at the
label-free threshold on ASD fell slightly (0.64-0.67x the oracle against 0.68-0.70x).
"""
SCORE_POWERS = (2, 4)
RATIO_CAP = 1e8  # e²/m beyond this is held there in the order-4 mean: r**4 summed over channels stays finite in float32

INPUT_LIMIT = 1e4
"""Scaled inputs are held within ``±INPUT_LIMIT`` robust spreads of their centre (a ``Clip`` in the graph).

A reading of 1e30 (or 1e300, infinite once cast to float32: a broken sensor's sentinel such as
FLT_MAX, or a sender on an open broker) overflowed the FP32 graph into an infinite or NaN score:
the gateway dropped those windows as ``non_finite_score``, 32 windows per such reading, and three
such batches in a row rolled an updated model back. With INT8 the score stayed finite but the
contributions did not, and alerts carried ``NaN`` shares (not JSON). Ten thousand spreads out is
far past any threshold (the score is then in the millions: the window is flagged and its channel
blamed), and every intermediate of the graph stays finite in float32. Normal data never comes near it.
"""

BANK_NEIGHBOURS = 4  # codes whose exact distance the latent score compares (ScoreGraph.latent_distance)


class ScoreGraph(nn.Module):
    """Raw window in, scores out: the whole scoring path as one module.

    Outputs, for a raw window ``(B, L, C)`` in sensor units, with ``score_stat = "error"``:
        score ``(B,)``: combined score, higher is more anomalous; about N(0, 1)-like on
            normal validation data (robustly centred and scaled).
        channel_scores ``(B, C)``: the contributions, larger is more to blame: each channel's
            time-weighted squared reconstruction error ``e_c²`` (scaled units) over its normal
            error ``m_c`` to the power :data:`BLAME_EXPONENT`, ``e_c² / m_c^0.75``; ``m_c`` is
            its mean on validation data, or a share of its normal tail where that is far heavier
            (``edge_aae.train.detector.CHANNEL_TAIL_RATIO``).
            Dividing by ``m_c`` in full lets a channel the model predicts almost perfectly
            (near-constant, or one of a tight group, ``m_c`` tiny) take the blame for a small
            knock-on change of a fault elsewhere; not dividing at all blames the channels that
            are always noisy. The reconstruction part of the score is the power mean of
            order :data:`SCORE_POWER` over channels of ``e_c² / m_c`` (1 is typical).
        latent_score ``(B,)``: the code's distance to the nearest code of a normal training
            window (``code_bank``), robustly normalized on validation data: how far the window
            lies from every operating state seen in training, in the space the prior shaped.
            It catches channels each in range but in a combination never seen (``unseen_mode``),
            which reconstruction alone can miss.

    With ``score_stat = "shift"``, ``b`` is each channel's time-weighted mean residual
    (reconstruction minus input, scaled units), a sustained shift that sample noise
    averages out of; ``d = b - shift_center``:
        score ``(B,)``: Hotelling's T² of ``d`` (``d' P d``, ``P`` the inverse covariance on
            normal windows) divided by its limit, so 1.0 is the ``t2`` threshold. The
            latent score is not added.
        channel_scores ``(B, C)``: ``d_c² / Σ_cc`` (1 is typical).
        latent_score ``(B,)``: as above.
    """

    center: torch.Tensor
    scale: torch.Tensor
    time_weights: torch.Tensor
    channel_scale: torch.Tensor
    level_mask: torch.Tensor
    score_stats: torch.Tensor
    shift_center: torch.Tensor
    shift_precision: torch.Tensor
    code_bank: torch.Tensor

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: LatentPrior,
                 window_len: int, n_channels: int, latent_weight: float, score_tail: float,
                 score_stat: str = "error", score_power: int = SCORE_POWER) -> None:
        """Normalization buffers start neutral; :meth:`set_normalization` fills them.

        ``score_power``: order of the power mean over channels in the ``error`` score (2 or 4).
        """
        super().__init__()
        if score_stat not in SCORE_STATS:
            raise ValueError(f"unknown score_stat {score_stat!r} ({', '.join(SCORE_STATS)})")
        if score_power not in SCORE_POWERS:
            raise ValueError(f"unknown score_power {score_power!r} ({', '.join(map(str, SCORE_POWERS))})")
        self.score_stat = score_stat
        self.score_power = int(score_power)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.latent_weight = float(latent_weight)
        self.register_buffer("center", torch.zeros(n_channels))
        self.register_buffer("scale", torch.ones(n_channels))
        self.register_buffer("time_weights",
                             torch.tensor(tail_weights(window_len, score_tail), dtype=torch.float32))
        self.register_buffer("channel_scale", torch.ones(n_channels))
        self.register_buffer("level_mask", torch.zeros(n_channels))
        self.register_buffer("score_stats", torch.tensor([0.0, 1.0, 0.0, 1.0]))
        self.register_buffer("code_bank", torch.zeros(1, prior.latent_dim))
        # (K, BANK_NEIGHBOURS): each code's nearest codes, itself first; derived from the bank
        self.register_buffer("bank_neighbours", torch.zeros(1, 1, dtype=torch.int32), persistent=False)
        if score_stat == "shift":
            self.register_buffer("shift_center", torch.zeros(n_channels))
            self.register_buffer("shift_precision", torch.eye(n_channels))

    def set_scaler(self, center: np.ndarray, scale: np.ndarray) -> None:
        """Store the robust scaler's statistics in the module."""
        self.center.copy_(torch.as_tensor(center, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))

    def set_normalization(self, channel_scale: np.ndarray, rec_center: float, rec_scale: float,
                          lat_center: float, lat_scale: float) -> None:
        """Store the validation statistics that make scores comparable."""
        self.channel_scale.copy_(torch.as_tensor(channel_scale, dtype=torch.float32))
        self.score_stats.copy_(torch.tensor([rec_center, rec_scale, lat_center, lat_scale]))

    def set_shift(self, center: np.ndarray, precision: np.ndarray) -> None:
        """Store the mean ``(C,)`` and inverse covariance ``(C, C)`` of normal mean residuals."""
        self.shift_center.copy_(torch.as_tensor(center, dtype=torch.float32))
        self.shift_precision.copy_(torch.as_tensor(precision, dtype=torch.float32))

    def set_code_bank(self, codes: np.ndarray | torch.Tensor) -> None:
        """Store the codes ``(K, latent_dim)`` of normal training windows the latent score measures against."""
        bank = torch.as_tensor(codes, dtype=torch.float32).reshape(-1, self.prior.latent_dim).detach().clone()
        self.code_bank = bank
        k = len(bank)
        b64 = bank.double().cpu()
        order = torch.cdist(b64, b64).argsort(dim=1, stable=True)  # (K, K), nearest first
        own = torch.arange(k).unsqueeze(1)
        # each code itself first, then its nearest others (an identical code may sort before it)
        others = order[order != own].reshape(k, k - 1)[:, :BANK_NEIGHBOURS - 1]
        # int32: half the bytes in the exported graph, which stores this table
        self.bank_neighbours = torch.cat([own, others], dim=1).to(device=bank.device, dtype=torch.int32)

    def latent_distance(self, z: torch.Tensor) -> torch.Tensor:
        """Euclidean distance ``(B,)`` from each code ``(B, D)`` to its nearest neighbour in the code bank.

        The codes are ranked by ``|b|² - 2 z·b``, the products as one MatMul
        (``(B, D) x (D, K) -> (B, K)``): no ``(B, K, D)`` temporary, which made this distance three
        quarters of a window's inference time. That expansion cancels (``|z|²`` is about 4 where the
        nearest ``|z - b|²`` is about 1e-3), so two codes nearly as near may swap places with the
        rounding of the MatMul, which differs between torch and onnxruntime. The distance is
        therefore computed directly (``|z - b|``) to the code ranked first (``ArgMin``) and to its
        nearest codes in the bank (``bank_neighbours``, :data:`BANK_NEIGHBOURS` with itself), and
        the smallest kept: a code about as near to ``z`` as the first, when ``z`` is very near it, is
        near that code too. Two codes on opposite sides of ``z`` can still tie; then the two
        distances differ by the ranking's rounding over ``2|z - b|`` (scores within 0.003 on 2 of
        7,169 test windows of the synthetic pump, torch against onnxruntime). ``TopK`` of the four
        best cost 12 % of an INT8 window's time at batch 128; a float64 ranking made onnxruntime
        allocate a megabyte per batch of 128. The INT8 export leaves the MatMul in FP32
        (``export.quantize.bank_node``).
        """
        bank_t = self.code_bank.t()  # (D, K); the graph stores this one constant
        norm = torch.linalg.vector_norm(bank_t, dim=0)  # (K,); ReduceL2 is not folded into a second bank
        rank = (norm * norm).unsqueeze(0) - 2.0 * (z @ bank_t)  # (B, K): |z - b|² - |z|²
        candidates = bank_t[:, self.bank_neighbours[rank.argmin(dim=1)]]  # (D, B, BANK_NEIGHBOURS)
        return (z.t().unsqueeze(-1) - candidates).pow(2).sum(0).amin(1).sqrt()

    def scale_input(self, window: torch.Tensor) -> torch.Tensor:
        """Raw sensor units to scaled units within :data:`INPUT_LIMIT`; ``level_mask`` channels lose their mean."""
        # (L, C) constants, not (C,): onnxruntime broadcasts a (C,) operand in spans of C elements
        # (8 for a pump), which made this Sub and Div 6 % of an INT8 window's time
        n = self.time_weights.shape[0]
        x = ((window - self.center.expand(n, -1)) * (1.0 / self.scale).expand(n, -1)).clamp(-INPUT_LIMIT, INPUT_LIMIT)
        if not bool(self.level_mask.any()):  # a constant of the model: the exported graph has no branch
            return x
        return x - self.level_mask * x.mean(dim=1, keepdim=True)

    def residual_stats(self, scaled: torch.Tensor,
                       weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel time-weighted residual statistic ``(B, C)`` and latent distance ``(B,)`` of scaled windows.

        The statistic is the squared error for the ``error`` score and the signed mean
        residual (reconstruction minus input) for the ``shift`` score. ``weights``: ``(L, 1)`` or
        ``(L, C)`` weights of the sum over time (default: the time weights).
        """
        z = self.encoder(scaled)
        resid = self.decoder(z) - scaled  # (B, L, C)
        if self.score_stat == "error":
            resid = resid.pow(2)
        w = self.time_weights.unsqueeze(-1) if weights is None else weights
        return (resid * w).sum(1), self.latent_distance(z)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score raw windows; see the class docstring for the outputs."""
        stats = self.score_stats
        if self.score_stat == "error":
            return self._error_outputs(self.scale_input(window))
        res, dist = self.residual_stats(self.scale_input(window))  # shift: signed mean residuals
        d = res - self.shift_center
        # d' P d as Mul + ReduceSum: no MatMul, so INT8 export leaves the precision in FP32
        t2 = ((d.unsqueeze(-1) * self.shift_precision).sum(1) * d).sum(1)
        return (t2 - stats[0]) / stats[1], d.pow(2) / self.channel_scale, (dist - stats[2]) / stats[3]

    def _error_outputs(self, scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``error`` score's outputs with as few graph nodes as the same arithmetic allows.

        The contributions (squared error of :meth:`residual_stats` over its validation mean to
        :data:`BLAME_EXPONENT`) and the score (the power mean of order :data:`SCORE_POWER` over
        channels of the squared error over its validation mean, robustly centred and scaled),
        regrouped so that the exported graph runs few small operators (each costs microseconds at
        batch 1, whatever its size): the time weights and the per-channel scale are one
        ``(L, C)`` constant (onnxruntime folds the ``Pow`` on constants when the session loads),
        the rest of the scale one ``(C,)`` multiply, and the power mean with its centring and
        scaling one ``ReduceL2`` (order 4: of the squares, after a ``Clip`` at
        :data:`RATIO_CAP`, then a ``Sqrt``) followed by one multiply-add.
        """
        stats = self.score_stats
        # (L, C): the time weights over each channel's validation mean to the BLAME_EXPONENT, one constant
        channel_scores, dist = self.residual_stats(
            scaled, self.time_weights.unsqueeze(-1) * self.channel_scale.pow(-BLAME_EXPONENT))
        # the score's part: each channel's squared error over its validation mean (one more (C,) constant)
        rest = self.channel_scale.pow(BLAME_EXPONENT - 1.0)
        gain = 1.0 / (channel_scores.shape[1] ** (1.0 / self.score_power) * stats[1])
        rec_norm = power_mean_norm(channel_scores * rest, self.score_power) * gain - stats[0] / stats[1]
        latent_score = (dist - stats[2]) / stats[3]
        return rec_norm + self.latent_weight * latent_score, channel_scores, latent_score
