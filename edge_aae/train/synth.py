"""A simulated centrifugal pump with a motor, for tests, demos and benchmarks.

A load signal, switching between operating modes, drives the physics: motor
speed, current and voltage follow at once, vibration grows with load squared,
motor temperature follows with a thermal lag and the bearing temperature lags
the motor, pressure and flow follow the pump curve. Every channel carries
sensor noise. The test series gets labelled faults of six kinds by default, and on request
a seventh, ``unseen_mode``: the machine settles at an operating point it never ran at in
training, every channel inside its training range and consistent with the others (a new
product, a valve left half-open). Nothing is broken, so reconstruction has little to see; it
is the case the AAE's latent density is there for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CHANNELS = ["speed_rpm", "current_a", "voltage_v", "vibration_mm_s",
            "motor_temp_c", "bearing_temp_c", "pressure_bar", "flow_m3h"]
MODE_LOADS = (0.25, 0.55, 0.85)
FAULT_KINDS = ("spike", "drift", "stuck", "broken_correlation", "level_shift", "vibration_onset")
UNSEEN_MODE = "unseen_mode"
ALL_FAULT_KINDS = (*FAULT_KINDS, UNSEEN_MODE)
UNSEEN_LOADS = (0.40, 0.70)  # halfway between the trained modes: passed through on ramps, never held
UNSEEN_BAND = 0.05  # an unseen_mode fault is labelled while the drive's load is this close to its unseen load
UNSEEN_LEAD_S = 300  # the setpoint moves to the unseen load this long before the planned label
NOISE_SD = np.array([4.0, 0.25, 0.8, 0.06, 0.15, 0.15, 0.05, 0.4])
START_TS = 1_700_000_000.0


@dataclass(frozen=True)
class Fault:
    """One injected fault: rows ``[start, end)`` of the test series (0-based data rows)."""

    kind: str
    start: int
    end: int
    channels: list[str]


@dataclass
class SynthResult:
    """What :func:`generate` returns: ``train``/``test`` are ``(n_rows, C)`` float64 (C = 8 by default)."""

    train_ts: np.ndarray
    train: np.ndarray
    test_ts: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    faults: list[Fault]
    channels: list[str] = field(default_factory=lambda: list(CHANNELS))


def _lag(x: np.ndarray, tau_s: float, x0: float | None = None) -> np.ndarray:
    """First-order lag with time constant ``tau_s`` at one sample per second."""
    a = 1.0 / tau_s
    out = np.empty_like(x)
    y = x[0] if x0 is None else x0
    for i, v in enumerate(x):
        y += a * (v - y)
        out[i] = y
    return out


def _schedule(rng: np.random.Generator, n: int) -> np.ndarray:
    """Load setpoint: piecewise constant operating modes of 400-1500 s."""
    setpoint = np.empty(n)
    i = 0
    mode = int(rng.integers(len(MODE_LOADS)))
    while i < n:
        d = int(rng.integers(400, 1500))
        setpoint[i:i + d] = MODE_LOADS[mode]
        mode = (mode + int(rng.integers(1, len(MODE_LOADS)))) % len(MODE_LOADS)
        i += d
    return setpoint


def _physics(rng: np.random.Generator, setpoint: np.ndarray) -> np.ndarray:
    """Channels from a load setpoint: ``(n,) -> (n, 8)``."""
    n = setpoint.size
    wander = _lag(rng.normal(0, 0.08, n), 30.0, 0.0)
    load = np.clip(_lag(setpoint, 45.0) + wander, 0.05, 1.0)  # the drive ramps between modes
    out = np.empty((n, len(CHANNELS)))
    out[:, 0] = 600 + 900 * load
    out[:, 1] = 3 + 20 * load
    out[:, 2] = 400 - 4 * load
    out[:, 3] = 0.6 + 2.2 * load**2
    motor = _lag(35 + 40 * load, 400.0, 35 + 40 * load[:600].mean())
    out[:, 4] = motor
    out[:, 5] = _lag(0.7 * motor + 8, 250.0, 0.7 * motor[0] + 8)
    out[:, 6] = 0.8 + 5.5 * load**1.5
    out[:, 7] = 6 + 19 * np.sqrt(np.maximum(out[:, 6] - 0.8, 0.0))
    out += rng.normal(0, 1, out.shape) * NOISE_SD
    return out


def _plan_faults(rng: np.random.Generator, n: int, per_kind: int, kinds_wanted: tuple[str, ...]) -> list[Fault]:
    kinds = [k for k in kinds_wanted for _ in range(per_kind)]
    rng.shuffle(kinds)
    slot = n // len(kinds)
    durations = {"spike": (60, 120), "drift": (300, 450), "stuck": (200, 320),
                 "broken_correlation": (180, 300), "level_shift": (150, 260),
                 "vibration_onset": (200, 320), UNSEEN_MODE: (300, 420)}
    faults = []
    for i, kind in enumerate(kinds):
        lo, hi = durations[kind]
        d = min(int(rng.integers(lo, hi)), slot - 200)
        start = i * slot + 100 + int(rng.integers(0, max(1, slot - d - 200)))
        if kind == "spike":
            chans = [CHANNELS[int(rng.choice([1, 3, 6, 7]))]]
        elif kind == "drift":
            chans = [CHANNELS[int(rng.choice([1, 3, 6, 7]))]]
        elif kind == "stuck":
            chans = [CHANNELS[int(rng.choice([0, 1, 6, 7]))]]
        elif kind == "broken_correlation":
            chans = [CHANNELS[int(rng.choice([1, 7]))]]
        elif kind == "level_shift":
            pair = [(6, 7), (0, 1), (1, 6)][int(rng.integers(3))]
            chans = [CHANNELS[j] for j in pair]
        elif kind == UNSEEN_MODE:
            chans = list(CHANNELS)
        else:
            chans = ["vibration_mm_s", "bearing_temp_c"]
        faults.append(Fault(kind, start, start + d, chans))
    return faults


def generate(seed: int = 0, train_rows: int = 14_400, test_rows: int = 10_800,
             faults_per_kind: int = 2, kinds: tuple[str, ...] = FAULT_KINDS, channels: int = 8) -> SynthResult:
    """Simulate normal training data and a faulty test series, deterministic for a seed.

    ``kinds``: the fault kinds to inject (default the six of :data:`FAULT_KINDS`;
    :data:`ALL_FAULT_KINDS` adds ``unseen_mode``). ``channels``: beyond the pump's 8, derived
    sensors ``aux_NN`` (each a fixed mix of two or three pump channels with its own noise, as
    redundant or computed plant tags are); the first 8 channels are the same for any count.
    """
    if channels < len(CHANNELS):
        raise ValueError(f"channels must be at least {len(CHANNELS)} (the pump's own), got {channels}")
    if train_rows < 1000 or test_rows < 1000:
        raise ValueError("train_rows and test_rows must be at least 1000")
    unknown = [k for k in kinds if k not in ALL_FAULT_KINDS]
    if unknown or not kinds:
        raise ValueError(f"fault kinds {unknown or '(none)'}: expected some of {', '.join(ALL_FAULT_KINDS)}")
    if faults_per_kind < 1 or test_rows // (faults_per_kind * len(kinds)) < 400:
        raise ValueError(f"test_rows={test_rows} too short for {faults_per_kind} fault(s) per kind")
    rng = np.random.default_rng(seed)
    train = _physics(rng, _schedule(rng, train_rows))
    unit = train.std(axis=0)

    faults = _plan_faults(rng, test_rows, faults_per_kind, kinds)
    setpoint = _schedule(rng, test_rows)
    for f in faults:
        if f.kind == UNSEEN_MODE:  # settle at a load never held in training, before the planned label
            setpoint[max(0, f.start - UNSEEN_LEAD_S):f.end] = UNSEEN_LOADS[int(rng.integers(len(UNSEEN_LOADS)))]
        if f.kind == "stuck":  # a stuck sensor shows when the process moves
            mid = f.start + (f.end - f.start) // 10
            cur = setpoint[mid]
            setpoint[mid:f.end + 150] = max(MODE_LOADS, key=lambda v: abs(v - cur))
    test = _physics(rng, setpoint)
    faults = _label_unseen_modes(faults, setpoint)
    labels = np.zeros(test_rows, dtype=np.int8)
    for f in faults:
        s, e = f.start, f.end
        idx = [CHANNELS.index(c) for c in f.channels]
        d = e - s
        if f.kind == "spike":
            j = idx[0]
            hits = rng.random(d) < 0.2
            hits[0] = True
            signs = rng.choice([-1.0, 1.0], d)
            test[s:e, j] += hits * signs * rng.uniform(2.5, 4.0, d) * unit[j]  # beyond normal noise
        elif f.kind == "drift":
            j = idx[0]
            test[s:e, j] += np.linspace(0.15, 1.2, d) * unit[j] * rng.choice([-1.0, 1.0])
        elif f.kind == "stuck":
            j = idx[0]
            test[s:e, j] = test[s, j]
        elif f.kind == "broken_correlation":
            j = idx[0]
            # the channel follows another operating point than the rest of the machine
            cur = float(setpoint[s:e].mean())
            other_load = max(MODE_LOADS, key=lambda v: abs(v - cur))
            test[s:e, j] = _physics(rng, np.full(d + 600, other_load))[600:, j]
        elif f.kind == UNSEEN_MODE:
            pass  # the setpoint did it: every channel follows the physics at the new operating point
        elif f.kind == "level_shift":
            # opposite offsets on two channels that normally move together (a calibration
            # shift): shifting both the same way would only look like another load
            sign = rng.choice([-1.0, 1.0])
            for k, j in enumerate(idx):
                test[s:e, j] += sign * (-1.0) ** k * rng.uniform(0.6, 1.0) * unit[j]
        else:  # vibration onset: rising broadband and periodic vibration, warmer bearing
            ramp = np.minimum(1.0, np.linspace(0.3, 2.0, d))
            t = np.arange(d)
            test[s:e, idx[0]] += ramp * (1.2 + 0.6 * np.sin(2 * np.pi * t / 9.0) + rng.normal(0, 0.3, d))
            test[s:e, idx[1]] += ramp * 0.5 * unit[idx[1]]
        labels[s:e] = 1
    train_ts = START_TS + np.arange(train_rows, dtype=np.float64)
    test_ts = train_ts[-1] + 3600.0 + np.arange(test_rows, dtype=np.float64)
    names = list(CHANNELS)
    if channels > len(CHANNELS):
        mix_rng = np.random.default_rng([seed, channels])  # the pump's channels stay those of the seed
        mixes = _aux_mixes(mix_rng, channels - len(CHANNELS), unit)
        train = np.hstack([train, _aux_values(mix_rng, train, mixes)])
        test = np.hstack([test, _aux_values(mix_rng, test, mixes)])
        names += [f"aux_{k:02d}" for k in range(channels - len(CHANNELS))]
    return SynthResult(train_ts, train, test_ts, test, labels, faults, names)


def _label_unseen_modes(faults: list[Fault], setpoint: np.ndarray) -> list[Fault]:
    """Each ``unseen_mode`` fault spans the rows where the drive's load is near its unseen load.

    The machine is in the unseen mode from the moment the drive's ramp (a 45 s lag) has brought
    its load within :data:`UNSEEN_BAND` of the unseen setpoint until the ramp back takes it out
    again, not only over the planned rows: those rows are the fault's start and end. They never
    reach into the fault planned before or after it.
    """
    load = _lag(setpoint, 45.0)
    bounds = [0] + [f.end for f in faults] + [len(setpoint)]
    starts = [f.start for f in faults] + [len(setpoint)]
    out = []
    for i, f in enumerate(faults):
        if f.kind != UNSEEN_MODE:
            out.append(f)
            continue
        lo, hi = max(bounds[i], f.start - UNSEEN_LEAD_S), starts[i + 1]
        target = setpoint[f.start]
        near = np.flatnonzero(np.abs(load[lo:hi] - target) < UNSEEN_BAND)
        runs = np.split(near, np.flatnonzero(np.diff(near) > 1) + 1)
        run = next(r for r in runs if r[0] + lo <= f.start < r[-1] + lo + 1)  # the stretch holding the plan
        out.append(Fault(f.kind, int(run[0] + lo), int(run[-1] + lo + 1), f.channels))
    return out


def _aux_mixes(rng: np.random.Generator, n: int, unit: np.ndarray) -> np.ndarray:
    """``(n, 8)`` weights: each derived sensor mixes two or three pump channels (in their own units)."""
    w = np.zeros((n, len(CHANNELS)))
    for k in range(n):
        picks = rng.choice(len(CHANNELS), size=int(rng.integers(2, 4)), replace=False)
        w[k, picks] = rng.uniform(0.5, 1.5, picks.size) * rng.choice([-1.0, 1.0], picks.size) / unit[picks]
    return w


def _aux_values(rng: np.random.Generator, x: np.ndarray, mixes: np.ndarray) -> np.ndarray:
    """Derived sensors of ``(n, 8)`` pump values: the mixes plus 5 % noise, in chunks (long series)."""
    out = np.empty((x.shape[0], mixes.shape[0]))
    for i in range(0, x.shape[0], 500_000):
        out[i:i + 500_000] = x[i:i + 500_000] @ mixes.T
    out += rng.normal(0.0, 0.05, out.shape) * out.std(axis=0)
    return out


def write_dataset(out_dir: Path, result: SynthResult, seed: int) -> None:
    """Write ``train.csv``, ``test.csv`` and ``faults.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "train.csv", result.train_ts, result.train, None, result.channels)
    _write_csv(out_dir / "test.csv", result.test_ts, result.test, result.labels, result.channels)
    meta = {
        "seed": seed,
        "channels": result.channels,
        "sample_period_s": 1.0,
        "rows": "0-based data rows of test.csv (header excluded), start inclusive, end exclusive",
        "faults": [asdict(f) | {"start_ts": float(result.test_ts[f.start]),
                                "end_ts": float(result.test_ts[f.end - 1])} for f in result.faults],
    }
    (out_dir / "faults.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s: %d train rows, %d test rows, %d faults", out_dir,
             result.train.shape[0], result.test.shape[0], len(result.faults))


def _write_csv(path: Path, ts: np.ndarray, values: np.ndarray, labels: np.ndarray | None,
               channels: list[str]) -> None:
    """One header line, then ``timestamp`` (0.1 s), the values (4 decimals) and the label, chunk by chunk."""
    header = ["timestamp", *channels] + (["label"] if labels is not None else [])
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        for i in range(0, values.shape[0], 100_000):
            cols = [np.char.mod("%.1f", ts[i:i + 100_000])]
            cols += [np.char.mod("%.4f", values[i:i + 100_000, j]) for j in range(values.shape[1])]
            if labels is not None:
                cols.append(labels[i:i + 100_000].astype(np.int64).astype(str))
            rows = cols[0]
            for c in cols[1:]:
                rows = np.char.add(np.char.add(rows, ","), c)
            f.write("\n".join(rows.tolist()) + "\n")
