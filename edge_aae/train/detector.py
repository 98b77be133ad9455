"""``AAEDetector``: fit on normal data, score new data, save and load a run directory.

Run directory layout::

    RUN/model.json    architecture, config, channels, scaler, normalization, thresholds,
                      training-data fingerprint, versions (everything to rebuild and score)
    RUN/weights.pt    state_dict of the scoring module, loaded with ``weights_only=True``
    RUN/report.json   training history, health warnings, MMD of codes vs prior
    RUN/report.png    losses over epochs; latent codes against prior samples
    RUN/calibration.npz  raw training windows (``train``, for INT8 calibration) and
                      validation windows (``val``, for thresholds and the export parity gate)
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_aae import __version__
from edge_aae.core.data import SensorData, assemble_series
from edge_aae.core.errors import CorruptModelError, DataError, ModelMismatchError
from edge_aae.core.scores import WindowScores
from edge_aae.core.streaming import StreamRule
from edge_aae.core.thresholds import fit_threshold, pot_min_scores, t2_limit
from edge_aae.core.unseen_state import UnseenStateRule, stream_breaks
from edge_aae.core.windows import (
    RobustScaler,
    gather_windows,
    level_mask,
    longest_segment,
    remove_level,
    stream_windows,
    window_ends,
)
from edge_aae.train import distributed
from edge_aae.train.config import TrainConfig, auto_latent_dim
from edge_aae.train.loop import TrainResult, resolve_device, train_aae, use_threads
from edge_aae.train.model import SCORE_POWER, LatentPrior, ScoreGraph, build_autoencoder, power_mean, time_weight_span
from edge_aae.train.window_source import WindowSource

log = logging.getLogger(__name__)

RUN_FORMAT = "edge-aae-run"
RUN_FORMAT_VERSION = 1
MIN_VAL_WINDOWS = 20
CHANNEL_TAIL_QUANTILE = 0.99
CHANNEL_TAIL_RATIO = 8.0
"""A channel's normal error in the ``error`` score is at least its 99th percentile over 8 (see ``_fit_normalization``).

Dividing each channel's squared error by its mean on validation windows alone, a channel whose
normal error is nearly always tiny but now and then large (a near-constant server metric with
rare normal blips, a counter that moves in steps) weighed its rare normal excursions tens of
times more than the others' and set off false alarms on them, or on a level it was not at
during the validation stretch. Where the 99th percentile of a channel's error, over validation
and training windows together, is more than 8 times its validation mean (a light-tailed
channel's is 2-3 times), the channel is weighed by that tail instead. ASD (12 entities,
offline, seed 0): mean AUPRC 0.441 -> 0.489, false alarms on normal windows 1.43 -> 0.67 %;
a generated server-metrics set with blip channels: 0.526 -> 0.749, 6.7 -> 0.17 %
(``BENCHMARKS.md``).
"""
CALIBRATION_WINDOWS = 1000
MAX_VAL_WINDOWS = 20000  # beyond, validation takes every k-th window
SCALER_FIT_ROWS = 500_000  # beyond, the scaler's median and IQR come from evenly spaced rows


class AAEDetector:
    """Adversarial autoencoder anomaly detector in the scikit-learn/PyOD style.

    Example:
        >>> det = AAEDetector(TrainConfig(epochs=5)).fit(load_series("train.csv"))
        >>> result = det.score(load_series("test.csv"))  # result.score: higher = more anomalous

    """

    report_: dict[str, Any] | None
    calibration_: dict[str, np.ndarray] | None = None
    run_dir_: Path | None = None

    def __init__(self, config: TrainConfig | None = None, name: str = "edge-aae") -> None:
        """Store the configuration and model name; nothing is fitted yet.

        ``config`` stays as given (scikit-learn's rule); ``config_`` is what ``fit`` resolved
        from it: preset decisions and the automatic latent size filled in.
        """
        self.config = config or TrainConfig()
        self.config_ = self.config
        self.name = name
        self.unseen_rule_: UnseenStateRule | None = None
        self.unseen_reason_ = "off: not fitted"

    # ----------------------------------------------------------------- fit
    def fit(self, data: SensorData | np.ndarray, progress: bool = False, checkpoint: Path | None = None,
            resume: bool = False, log_dir: Path | None = None) -> AAEDetector:
        """Learn normal behaviour from ``data`` (a series or an ``(n_rows, C)`` array).

        ``checkpoint``: a file the training loop rewrites after every epoch; ``resume``: continue
        from it (the same data and config give the same model as an uninterrupted run);
        ``log_dir``: TensorBoard scalars per epoch. Under ``torchrun`` every rank trains and
        only rank 0 fits the scoring and threshold (the others return after training, with
        ``replica_ = True``).

        Raises:
            DataError: too few rows for one window, or for a validation split.

        """
        data = _as_series(data, self.config)
        from edge_aae.train.preset import choose_settings

        self.config_, decisions = choose_settings(data, self.config)  # labels are never read
        self.preset_ = [d.to_dict() for d in decisions]
        if self.config_.latent_dim == 0:
            self.config_ = self.config_.replace(latent_dim=auto_latent_dim(len(data.channels)))
        cfg = self.config_
        t0 = time.monotonic()
        ends = window_ends(data.segments, cfg.window_len, cfg.stride)
        n_min = int(np.ceil(MIN_VAL_WINDOWS / cfg.val_fraction))
        if ends.size < n_min:
            raise DataError(f"{data.path}: too few rows: {ends.size} window(s) of {cfg.window_len} rows "
                            f"fit in the usable segments; training needs at least {n_min}")
        split = int(round(ends.size * (1 - cfg.val_fraction)))
        val_ends = ends[split:]
        # no training window may overlap a validation window
        train_ends = ends[:split][ends[:split] < val_ends[0] - cfg.window_len + 1]
        if train_ends.size == 0:
            train_ends = ends[:split]
        # a long series: validation is every k-th window (its scores are as correlated over k
        # times fewer windows, which the threshold's span accounts for)
        val_step = max(1, -(-val_ends.size // MAX_VAL_WINDOWS))
        val_ends = val_ends[::val_step]
        self.scaler_ = RobustScaler().fit(data.values[_training_rows(data.n_rows, train_ends, cfg.window_len)])
        constant = [c for c, k in zip(data.channels, self.scaler_.constant_, strict=True) if k]
        if constant:
            log.warning("%s: channel(s) %s are constant in the training data: any change in them scores as "
                        "anomalous; drop them with --channels if they are not meant to move", data.path,
                        ", ".join(constant))
        rng = np.random.default_rng(cfg.seed)
        scaled = _scaled_f32(self.scaler_, data.values)
        mask = level_mask(cfg.relative_channels, list(data.channels))
        # a sample of training windows for the steps below that need them stacked (shift reference)
        train_sample = (np.sort(rng.choice(train_ends, cfg.windows_per_epoch, replace=False))
                        if train_ends.size > cfg.windows_per_epoch else train_ends)
        train_w = remove_level(gather_windows(scaled, train_sample, cfg.window_len), mask)
        val_w = remove_level(gather_windows(scaled, val_ends, cfg.window_len), mask)
        log.info("training on %d windows (%d drawn per epoch), validating on %d (window_len=%d, %d channels)",
                 train_ends.size, min(cfg.windows_per_epoch, train_ends.size), val_w.shape[0], cfg.window_len,
                 len(data.channels))
        source = WindowSource(scaled, train_ends, cfg.window_len, mask, resolve_device(cfg.device))
        result = train_aae(source, val_w, cfg, progress=progress, checkpoint=checkpoint, resume=resume,
                           log_dir=log_dir)
        del source
        self.replica_ = not distributed.current().is_main
        if self.replica_:
            return self
        _check_validation_fit(result, val_w, list(data.channels), str(data.path))
        self.channels_ = list(data.channels)
        self.sample_period_s_ = float(data.sample_period_s)
        self.fingerprint_ = data.fingerprint()
        calib = np.sort(rng.choice(train_ends, min(CALIBRATION_WINDOWS, train_ends.size), replace=False))
        calib_w = remove_level(gather_windows(scaled, calib, cfg.window_len), mask)
        val_raw = gather_windows(data.values, val_ends, cfg.window_len)
        self.calibration_ = {"train": gather_windows(data.values, calib, cfg.window_len),
                             "val": val_raw}
        # overlapping windows' scores are correlated over about 1 / sum(w^2) windows (the time weights)
        self.threshold_span_ = time_weight_span(cfg.window_len, cfg.score_tail, cfg.stride * val_step)
        self._fit_scoring(result, calib_w, mask, val_w, train_w)
        self.self_check_ = self._self_check()
        log.info("self-check: the threshold flags %s of synthetic faults in held-out normal windows",
                 ", ".join(f"{v:.0%} of {k}" for k, v in self.self_check_.items()))
        self.train_seconds_ = time.monotonic() - t0
        self.report_ = self._make_report(result, val_w)
        log.info("fitted in %.1f s; threshold %.3f (%s, target false-alarm rate %g)",
                 self.train_seconds_, self.threshold_, self.threshold_rule_, cfg.target_far)
        self._train_result = result
        return self

    def _self_check(self) -> dict[str, float]:
        """Share of synthetic faults, by kind, injected into held-out normal windows that the threshold flags.

        The faults (:mod:`edge_aae.train.selfcheck`) go into the raw validation windows, the same
        windows the threshold was fitted on untouched. A sensitivity report, not a choice: picking
        the score by it was measured and made things worse on both real data sets (README).
        """
        from edge_aae.train.selfcheck import detection_by_kind, inject_faults

        faults = inject_faults(self.load_calibration()["val"], self.scaler_.scale_, seed=self.config_.seed,
                               movable=~self.scaler_.constant_)
        return detection_by_kind(self.score_windows(faults.windows)[0], faults.kinds, self.threshold_)

    def _fit_scoring(self, result: TrainResult, calib_w: np.ndarray, mask: np.ndarray,
                     val_w: np.ndarray, train_w: np.ndarray) -> None:
        """Build the scorer for ``config_.score_stat`` and fit its normalization and threshold."""
        cfg = self.config_
        self.scorer_ = self._build_scorer(result.encoder, result.decoder, result.prior)
        self.scorer_.set_scaler(self.scaler_.center_, self.scaler_.scale_)
        self.scorer_.level_mask.copy_(torch.as_tensor(mask, dtype=torch.float32))
        with torch.no_grad():  # the latent score's reference: codes of normal training windows
            self.scorer_.set_code_bank(self.scorer_.encoder(torch.from_numpy(calib_w.astype(np.float32))))
        self.shift_inflation_: float | None = None  # set by _fit_shift; none with the error score
        self.tail_channels_: list[str] = []  # set by _fit_normalization: channels weighed by their normal tail
        if cfg.score_stat == "shift":
            self._fit_shift(val_w, train_w)
        else:
            self._fit_normalization(val_w, train_w)
        calibration = self.load_calibration()
        self.val_scores_, _, val_latent = self.score_windows(calibration["val"])
        train_raw = calibration["train"]
        methods = ("pot", "quantile", "t2") if cfg.score_stat == "shift" else ("pot", "quantile")
        fit = fit_threshold(self.val_scores_, lambda: self.score_windows(train_raw)[0], cfg.threshold,
                            cfg.target_far, init_quantile=cfg.pot_init_quantile, span=self.threshold_span_,
                            rules=methods, t2_n_effective=self.shift_n_eff_ if cfg.score_stat == "shift" else None,
                            n_channels=len(self.channels_), floor=self.score_floor())
        self.thresholds_, self.threshold_rule_, self.threshold_ = fit.by_rule, fit.rule, fit.value
        self.unseen_rule_, self.unseen_reason_ = self._fit_unseen_state(val_latent)

    def _fit_unseen_state(self, val_latent: np.ndarray) -> tuple[UnseenStateRule | None, str]:
        """The unseen-state rule (:mod:`edge_aae.core.unseen_state`) and why it is on or off.

        ``val_latent``: the validation windows' latent scores ``(n,)``. The rule's level is the
        latent score's own threshold on them, by the score's rule and target; the training windows
        are the code bank itself (distance 0), so only validation windows calibrate it, and only
        when they are enough for a tail fit.
        """
        cfg = self.config_
        if not cfg.unseen_state:
            return None, "off (unseen_state = false)"
        if cfg.score_stat != "error":
            return None, f"off: the {cfg.score_stat} score (a short training stretch) leaves no tail fit for it"
        n_val = val_latent.shape[0]
        if n_val < pot_min_scores(cfg.pot_init_quantile):
            return None, f"off: {n_val} validation windows are too few for a tail fit of the latent score"
        level = fit_threshold(val_latent, val_latent, self.threshold_rule_, cfg.target_far,
                              init_quantile=cfg.pot_init_quantile, span=self.threshold_span_).value
        rule = UnseenStateRule.for_window(level, cfg.window_len, cfg.stride)
        held = "each" if rule.needed == rule.span else f"{rule.needed}"
        return rule, (f"on: latent score over {level:.3g} (its {self.threshold_rule_} threshold on {n_val} validation "
                      f"windows) in {held} of the last {rule.span} windows")

    def score_floor(self) -> float:
        """The lowest value the score can take.

        0 for ``shift`` (T² over its limit); for ``error``, the score of a window reconstructed
        exactly whose code sits on a bank code:
        ``-rec_center / rec_scale - latent_weight * latent_center / latent_scale``.
        """
        if self.config_.score_stat == "shift":
            return 0.0
        rec_c, rec_s, lat_c, lat_s = (float(v) for v in self.scorer_.score_stats.tolist())
        return -rec_c / rec_s - self.config_.latent_weight * lat_c / lat_s

    def _build_scorer(self, encoder: torch.nn.Module, decoder: torch.nn.Module,
                      prior: LatentPrior, score_power: int = SCORE_POWER) -> ScoreGraph:
        cfg = self.config_
        scorer = ScoreGraph(encoder, decoder, prior, cfg.window_len, len(self.channels_),
                           cfg.latent_weight, cfg.score_tail, cfg.score_stat, score_power)
        return scorer.to("cpu").eval()

    @torch.no_grad()
    def _residual_stats(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ScoreGraph.residual_stats` of scaled windows in batches, as float64 arrays."""
        stats, dists = [], []
        for i in range(0, scaled.shape[0], 256):
            r, n = self.scorer_.residual_stats(torch.from_numpy(scaled[i:i + 256]))
            stats.append(r.numpy())
            dists.append(n.numpy())
        return np.concatenate(stats).astype(np.float64), np.concatenate(dists).astype(np.float64)

    def _fit_normalization(self, val_scaled: np.ndarray, train_scaled: np.ndarray) -> None:
        """Each channel's normal squared error ``m_c`` and the score's robust centre and scale.

        ``m_c`` is the channel's mean error on validation windows, raised where its normal tail is
        far heavier than that mean says: to the :data:`CHANNEL_TAIL_QUANTILE` of its error over
        validation and training windows together, divided by :data:`CHANNEL_TAIL_RATIO`.
        """
        err, dist = self._residual_stats(val_scaled)
        train_err, _ = self._residual_stats(train_scaled)
        mean = err.mean(axis=0)
        tail = np.quantile(np.concatenate([err, train_err]), CHANNEL_TAIL_QUANTILE, axis=0) / CHANNEL_TAIL_RATIO
        channel_scale = np.maximum(np.maximum(mean, tail), 1e-4)
        raised = [c for c, k in zip(self.channels_, tail > mean, strict=True) if k]
        self.tail_channels_ = raised
        if raised:
            log.info("error score: %d channel(s) weighed by their normal tail rather than their mean error: %s",
                     len(raised), ", ".join(raised[:10]) + (" ..." if len(raised) > 10 else ""))
        rec = power_mean(err / channel_scale, self.scorer_.score_power)
        self.scorer_.set_normalization(channel_scale, *_robust_stats(rec), *_robust_stats(dist))

    def _fit_shift(self, val_scaled: np.ndarray, train_scaled: np.ndarray) -> None:
        """Mean and covariance of normal mean residuals, and the T² limit the score is divided by.

        The reference is the validation windows, with the training windows added when there
        are too few of them for a tail fit (the same rule as the thresholds). Overlapping
        windows are not independent: each window's weighted mean spans about ``1 / Σ w²``
        samples, so the limit counts the reference as that many times fewer observations.

        Training windows are ones the model was fitted to: their residuals are smaller than
        those of normal data it has not seen. Where they join the reference, the covariance is
        scaled up by how much larger the validation windows' T² is on average than its
        expectation ``p`` (:func:`validation_inflation`), never down.
        """
        cfg = self.config_
        ref = val_scaled
        if val_scaled.shape[0] < pot_min_scores(cfg.pot_init_quantile):
            ref = np.concatenate([val_scaled, train_scaled])
        b, dist = self._residual_stats(ref)  # (n_ref, C) mean residuals
        dist = dist[:val_scaled.shape[0]]  # the latent statistics come from validation windows alone
        center = b.mean(axis=0)
        cov = np.atleast_2d(np.cov(b, rowvar=False))
        cov += np.eye(cov.shape[0]) * (1e-4 * float(np.mean(np.diag(cov))) + 1e-10)  # constant channels
        self.shift_inflation_ = 1.0
        if ref.shape[0] > val_scaled.shape[0]:  # training windows joined: their residuals flatter the model
            self.shift_inflation_ = validation_inflation(b[:val_scaled.shape[0]] - center, np.linalg.inv(cov))
            cov *= self.shift_inflation_
            log.info("shift score: covariance scaled by %.2f (validation windows' mean T² over its expectation)",
                     self.shift_inflation_)
        n_eff = ref.shape[0] / time_weight_span(cfg.window_len, cfg.score_tail)
        limit = t2_limit(cov.shape[0], n_eff, cfg.target_far)
        if n_eff < 2 * cov.shape[0]:
            log.warning("shift score: %d reference windows are about %.0f independent observations for "
                        "%d channels; the covariance is rough and the T² limit wide", ref.shape[0], n_eff,
                        cov.shape[0])
        self.shift_n_eff_ = n_eff
        self.scorer_.set_shift(center, np.linalg.inv(cov))
        self.scorer_.set_normalization(np.diag(cov).copy(), 0.0, limit, *_robust_stats(dist))
        log.info("shift score: T² limit %.2f for %d channels from %d windows (%.0f effective)",
                 limit, cov.shape[0], ref.shape[0], n_eff)

    def _make_report(self, result: TrainResult, val_scaled: np.ndarray) -> dict[str, Any]:
        from edge_aae.train.report import codes_vs_prior_mmd
        with torch.no_grad():
            codes = torch.cat([self.scorer_.encoder(torch.from_numpy(val_scaled[i:i + 256]))
                               for i in range(0, min(2000, val_scaled.shape[0]), 256)]).numpy()
            prior = self.scorer_.prior.sample(codes.shape[0],
                                              torch.Generator().manual_seed(self.config_.seed)).numpy()
        return {
            "history": result.history_dicts(),
            "best_epoch": result.best_epoch,
            "device": result.device,
            "amp": result.amp,
            "train_seconds": self.train_seconds_,
            "warnings": result.warnings,
            "mmd_codes_vs_prior": codes_vs_prior_mmd(codes, prior),
            "threshold": self.threshold_,
            "threshold_rule": self.threshold_rule_,
            "thresholds": self.thresholds_,
            "unseen_state": self.unseen_reason_,
            "constant_channels": [c for c, k in zip(self.channels_, self.scaler_.constant_, strict=True) if k],
            "preset": {"name": self.config_.preset, "decisions": self.preset_},
            "val_windows": int(val_scaled.shape[0]),
            "shift_covariance_inflation": self.shift_inflation_,
            "tail_weighted_channels": self.tail_channels_,
            "self_check": self.self_check_,
        }

    # --------------------------------------------------------------- score
    @torch.no_grad()
    def score_windows(self, windows: np.ndarray, batch_size: int = 256
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score raw windows ``(n, window_len, C)``: ``(score (n,), channel_scores (n, C), latent (n,))``."""
        self._check_fitted()
        out: list[list[np.ndarray]] = [[], [], []]
        for i in range(0, windows.shape[0], batch_size):
            with np.errstate(over="ignore"):  # beyond float32's range: ±inf, held by the graph's Clip
                batch = np.ascontiguousarray(windows[i:i + batch_size], dtype=np.float32)
            res = self.scorer_(torch.from_numpy(batch))
            for acc, r in zip(out, res, strict=True):
                acc.append(r.numpy())
        if not out[0]:
            c = len(self.channels_)
            return np.empty(0, np.float32), np.empty((0, c), np.float32), np.empty(0, np.float32)
        score, channel_scores, latent = (np.concatenate(a) for a in out)
        return score, channel_scores, latent

    def score(self, data: SensorData | np.ndarray, stride: int | None = None) -> WindowScores:
        """Score every window of a series (by default every ``config.stride`` rows).

        ``data`` must have the training channels (by name; extra columns are ignored).

        Raises:
            ModelMismatchError: a training channel is missing.
            DataError: fewer rows than one window.

        """
        self._check_fitted()
        data = _as_series(data, self.config_, self.channels_)
        data = data.select_channels(self.channels_)
        windows, ends = stream_windows(data, self.config_.window_len, stride or self.config_.stride,
                                       self.stream_rule, self.sample_period_s_)
        if ends.size == 0:
            raise DataError(f"{data.path}: too few rows for one window of {self.config_.window_len} "
                            f"(longest usable segment: {longest_segment(data, self.stream_rule, self.sample_period_s_)}"
                            " rows)")
        score, channel_scores, latent = self.score_windows(windows)
        held = None
        if self.unseen_rule_ is not None:  # its span counts windows: at another stride, as many rows
            step = stride or self.config_.stride
            rule = UnseenStateRule.for_window(self.unseen_rule_.level, self.config_.window_len, step)
            held = rule.flags(latent, stream_breaks(ends, step))
        return WindowScores(ends, data.timestamps[ends], score, channel_scores, latent,
                            self.threshold_, list(self.channels_), unseen_state=held)

    @property
    def stream_rule(self) -> StreamRule:
        """How this model windows a raw series, offline and (once exported) on the gateway."""
        return StreamRule(self.config_.max_gap_factor)

    @torch.no_grad()
    def encode(self, windows: np.ndarray) -> np.ndarray:
        """Latent codes of raw windows: ``(n, window_len, C)`` -> ``(n, latent_dim)`` float32."""
        self._check_fitted()
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        return self.scorer_.encoder(self.scorer_.scale_input(x)).numpy()

    @torch.no_grad()
    def prior_samples(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` samples of the latent prior: ``(n, latent_dim)``."""
        self._check_fitted()
        return self.scorer_.prior.sample(n, torch.Generator().manual_seed(seed)).numpy()

    # -------------------------------------------------------------- sample
    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Decode ``n`` prior samples into synthetic normal windows ``(n, window_len, C)``, raw units."""
        self._check_fitted()
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        gen = torch.Generator().manual_seed(self.config_.seed if seed is None else seed)
        z = self.scorer_.prior.sample(n, generator=gen)
        scaled = self.scorer_.decoder(z).numpy().astype(np.float64)
        return scaled * self.scaler_.scale_ + self.scaler_.center_

    # ---------------------------------------------------------- save / load
    def save(self, path: str | Path) -> Path:
        """Write the run directory (see module docstring)."""
        self._check_fitted()
        run = Path(path)
        run.mkdir(parents=True, exist_ok=True)
        torch.save(self.scorer_.state_dict(), run / "weights.pt")
        (run / "model.json").write_text(json.dumps(self.metadata(), indent=2) + "\n", encoding="utf-8")
        calibration = getattr(self, "calibration_", None)
        if calibration is not None:
            np.savez_compressed(run / "calibration.npz", **calibration)
        if getattr(self, "report_", None) is not None:
            (run / "report.json").write_text(json.dumps(self.report_, indent=2) + "\n", encoding="utf-8")
        return run

    def metadata(self) -> dict[str, Any]:
        """Everything needed to rebuild and score, as JSON-ready data."""
        stats = self.scorer_.score_stats.tolist()
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "name": self.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.config_.to_dict(),
            "channels": self.channels_,
            "sample_period_s": self.sample_period_s_,
            "scaler": self.scaler_.to_dict(),
            "normalization": {
                "channel_scale": self.scorer_.channel_scale.tolist(),
                "score_power": self.scorer_.score_power,
                "rec_center": stats[0], "rec_scale": stats[1],
                "latent_center": stats[2], "latent_scale": stats[3],
            },
            "threshold": self.threshold_,
            "threshold_rule": self.threshold_rule_,
            "threshold_span": self.threshold_span_,
            "unseen_state": None if self.unseen_rule_ is None else self.unseen_rule_.to_json(),
            "unseen_state_reason": self.unseen_reason_,
            "preset": {"name": self.config_.preset, "decisions": getattr(self, "preset_", [])},
            "thresholds": self.thresholds_,
            "constant_channels": [c for c, k in zip(self.channels_, self.scaler_.constant_, strict=True) if k],
            "score_direction": "higher_is_anomalous",
            "training_data_fingerprint": self.fingerprint_,
            "versions": {"edge_aae": __version__, "torch": torch.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
        }

    @classmethod
    def load(cls, path: str | Path) -> AAEDetector:
        """Rebuild a fitted detector from a run directory.

        Raises:
            CorruptModelError: a file is missing, unreadable, or from another format version.

        """
        run = Path(path)
        meta_path = run / "model.json"
        if not run.is_dir():
            raise CorruptModelError(f"{run}: not a run directory")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorruptModelError(f"{meta_path}: missing; not a run directory") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptModelError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
            raise CorruptModelError(f"{meta_path}: not an edge-aae run (format {meta.get('format')!r})"
                                    if isinstance(meta, dict) else f"{meta_path}: not a JSON object")
        if meta.get("format_version") != RUN_FORMAT_VERSION:
            raise CorruptModelError(f"{meta_path}: format_version {meta.get('format_version')!r} is not "
                                    f"supported by edge-aae {__version__} (expects {RUN_FORMAT_VERSION})")
        try:
            det = cls(TrainConfig.from_dict(meta["config"], source=f"{meta_path}: config"),
                      name=str(meta.get("name", "edge-aae")))
            det.channels_ = list(meta["channels"])
            det.sample_period_s_ = float(meta["sample_period_s"])
            det.scaler_ = RobustScaler.from_dict(meta["scaler"])
            det.threshold_ = float(meta["threshold"])
            det.thresholds_ = {k: float(v) for k, v in meta["thresholds"].items()}
            det.threshold_rule_ = str(meta.get("threshold_rule", det.config_.threshold))
            det.threshold_span_ = float(meta.get("threshold_span", 1.0))
            det.fingerprint_ = str(meta["training_data_fingerprint"])
            det.unseen_rule_ = UnseenStateRule.from_json(meta.get("unseen_state"), f"{meta_path}: unseen_state")
            det.unseen_reason_ = str(meta.get("unseen_state_reason", "off: the run predates the rule"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptModelError(f"{meta_path}: missing or invalid field ({exc})") from None
        cfg = det.config_
        use_threads(cfg.threads)  # scoring a run on the CPU: the same threads as training
        enc, dec = build_autoencoder(cfg.arch, cfg.window_len, len(det.channels_), cfg.hidden, cfg.latent_dim)
        # runs from before the order-4 score kept the root mean square their statistics were fitted with
        norm = meta.get("normalization")
        power = norm.get("score_power", 2) if isinstance(norm, dict) else 2
        try:
            det.scorer_ = det._build_scorer(enc, dec, LatentPrior(cfg.prior, cfg.latent_dim, cfg.n_components),
                                            int(power))
        except (TypeError, ValueError) as exc:
            raise CorruptModelError(f"{meta_path}: normalization.score_power: {exc}") from None
        weights = run / "weights.pt"
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state.setdefault("level_mask", torch.zeros(len(det.channels_)))  # runs from before the option
            if "code_bank" not in state:
                raise CorruptModelError(f"{weights}: the run predates the latent code bank: retrain it with "
                                        f"edge-aae {__version__}")
            det.scorer_.set_code_bank(state["code_bank"])
            det.scorer_.load_state_dict(state)
        except FileNotFoundError:
            raise CorruptModelError(f"{weights}: missing") from None
        except CorruptModelError:
            raise
        except Exception as exc:  # torch raises many kinds for a damaged file
            raise CorruptModelError(f"{weights}: cannot load weights ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200]})") from None
        det.scorer_.eval()
        report = run / "report.json"
        det.report_ = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else None
        det.run_dir_ = run
        det.calibration_ = None
        return det

    def load_calibration(self) -> dict[str, np.ndarray]:
        """Raw calibration windows saved with the run: ``{"train": (n, L, C), "val": (m, L, C)}``.

        Raises:
            CorruptModelError: the run has no (or a damaged) ``calibration.npz``.

        """
        if self.calibration_ is not None:
            return self.calibration_
        path = (self.run_dir_ or Path(".")) / "calibration.npz"
        try:
            with np.load(path) as f:
                calib = {"train": f["train"], "val": f["val"]}
        except FileNotFoundError:
            raise CorruptModelError(f"{path}: missing calibration set (the run predates it: "
                                    "retrain with this version of edge-aae)") from None
        except (KeyError, ValueError, OSError) as exc:
            raise CorruptModelError(f"{path}: unreadable calibration set ({exc})") from None
        shape = (self.config_.window_len, len(self.channels_))
        for key, arr in calib.items():
            if arr.ndim != 3 or arr.shape[1:] != shape or arr.shape[0] == 0:
                raise CorruptModelError(f"{path}: '{key}' has shape {arr.shape}, "
                                        f"expected (n, {shape[0]}, {shape[1]})")
        self.calibration_ = calib
        return calib

    def _check_fitted(self) -> None:
        if not hasattr(self, "scorer_"):
            raise RuntimeError("AAEDetector is not fitted: call fit() or load() first")


def _training_rows(n_rows: int, train_ends: np.ndarray, window_len: int) -> np.ndarray:
    """Indices of the rows the training windows cover (evenly thinned beyond ``SCALER_FIT_ROWS``)."""
    covered = np.zeros(n_rows + 1, dtype=np.int32)
    np.add.at(covered, train_ends - window_len + 1, 1)
    np.add.at(covered, train_ends + 1, -1)
    rows = np.flatnonzero(np.cumsum(covered[:-1]) > 0)
    if rows.size > SCALER_FIT_ROWS:
        rows = rows[np.linspace(0, rows.size - 1, SCALER_FIT_ROWS).astype(np.int64)]
    return rows


def _scaled_f32(scaler: RobustScaler, values: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """``scaler.transform(values)`` as float32, a chunk at a time (no float64 copy of a long series)."""
    out = np.empty(values.shape, dtype=np.float32)
    for i in range(0, values.shape[0], chunk):
        out[i:i + chunk] = scaler.transform(values[i:i + chunk])
    return out


def validation_inflation(d_val: np.ndarray, precision: np.ndarray) -> float:
    """How far normal windows the model did not train on exceed the T² expected of them, at least 1.

    Args:
        d_val: ``(n, p)`` validation windows' mean residuals minus the reference mean.
        precision: ``(p, p)`` inverse covariance of the reference (training windows included).

    Returns:
        ``max(1, mean(T²) / p)``: under a covariance that fits them, ``T²`` averages ``p``. A
        model's residuals on its own training windows are smaller than on unseen normal data,
        so the true ratio is at least 1; the covariance is multiplied by it.

    """
    if d_val.shape[0] == 0:
        return 1.0
    t2 = np.einsum("ij,jk,ik->i", d_val, precision, d_val)
    return max(1.0, float(t2.mean()) / d_val.shape[1])


def _robust_stats(x: np.ndarray) -> tuple[float, float]:
    """Median and IQR/1.349 (floored) of ``x``."""
    med = float(np.median(x))
    q75, q25 = np.percentile(x, [75, 25])
    return med, float(max((q75 - q25) / 1.349, 1e-6, 1e-3 * abs(med)))


VAL_TRAIN_RATIO_LIMIT = 100.0


@torch.no_grad()
def _check_validation_fit(result: TrainResult, val_scaled: np.ndarray, channels: list[str], where: str) -> None:
    """A validation loss orders of magnitude above the training loss is an error, not a number.

    It means the validation stretch (the end of the training data) holds values the scaler and
    the model never saw: a near-constant channel that moves, a unit change, a fault in the
    "normal" data. Thresholds fitted on it would be meaningless.

    Raises:
        DataError: naming the channels whose validation error is largest.

    """
    best = result.history[result.best_epoch - 1]
    if not best.val_loss > VAL_TRAIN_RATIO_LIMIT * max(best.recon_loss, 1e-3):
        return
    x = torch.from_numpy(val_scaled[:4096]).to(next(result.encoder.parameters()).device)
    err = (result.decoder(result.encoder(x)) - x).pow(2).mean(dim=(0, 1)).float().cpu().numpy()
    worst = np.argsort(err)[::-1][:3]
    names = ", ".join(f"{channels[i]} ({err[i]:.3g})" for i in worst)
    ratio = best.val_loss / max(best.recon_loss, 1e-3)
    raise DataError(f"{where}: validation loss {best.val_loss:.4g} is {ratio:.0f}x the training loss "
                    f"{best.recon_loss:.4g}: the end of the training data is unlike the rest; "
                    f"largest errors (mean squared, scaled units): {names}. Check those channels (a near-constant "
                    "channel that moves, a unit change, a fault in the training data), drop them with --channels, "
                    "or train on a cleaner stretch")


def _as_series(data: SensorData | np.ndarray, cfg: TrainConfig,
               channels: list[str] | None = None) -> SensorData:
    if isinstance(data, SensorData):
        return data
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"expected an (n_rows, n_channels) array, got shape {arr.shape}")
    if channels is not None and len(channels) != arr.shape[1]:
        raise ModelMismatchError(f"array has {arr.shape[1]} channels, the model {len(channels)}")
    names = channels if channels is not None else [f"ch{i + 1}" for i in range(arr.shape[1])]
    return assemble_series("<array>", names, np.arange(arr.shape[0], dtype=np.float64), arr, None,
                           max_nan_run=cfg.max_nan_run, max_gap_factor=cfg.max_gap_factor)
