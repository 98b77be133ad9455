"""onnxruntime scoring of raw windows (torch-free); the daemon and ``score BUNDLE`` use it."""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from edge_aae.core.errors import CorruptModelError, DataError, ModelMismatchError
from edge_aae.core.manifest import GRAPH_INPUT, GRAPH_OUTPUTS
from edge_aae.core.scores import WindowScores
from edge_aae.core.streaming import StreamRule
from edge_aae.core.unseen_state import stream_breaks
from edge_aae.core.windows import longest_segment, stream_windows
from edge_aae.gateway.bundle import Bundle, open_bundle

if TYPE_CHECKING:  # the daemon never loads files: edge_aae.core.data stays unimported on a gateway
    from edge_aae.core.data import SensorData

log = logging.getLogger(__name__)

VNNI_FLAGS = ("avx512_vnni", "avx_vnni")  # /proc/cpuinfo flags: int8 products summed in 32 bits


def exact_int8_needed(machine: str, cpuinfo: str | None) -> bool:
    """Whether onnxruntime must compute int8 layers as u8u8 (``session.x64quantprecision``) on this CPU.

    x86-64 CPUs without VNNI add pairs of u8s8 products in 16 bits, which full 8-bit weights
    can overflow; the entry makes onnxruntime turn every int8 weight into u8 and use its exact,
    slower u8u8 kernels. With VNNI (``avx512_vnni`` or ``avx_vnni``) the products are summed in
    32 bits, exactly, and the entry only costs time: on an AVX-512 VNNI Xeon it made inference
    2.1x slower at batches of 128 windows and 1.17x at batch 1, with the same scores to the last
    bit. Other architectures ignore it.

    Args:
        machine: the machine's architecture (``os.uname().machine``).
        cpuinfo: the text of ``/proc/cpuinfo``, or None where it cannot be read (then an
            x86-64 CPU is taken to lack VNNI).

    """
    if machine.lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return False
    if cpuinfo is None:
        return True
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags") and ":" in line), [])
    return not any(f in flags for f in VNNI_FLAGS)


@functools.cache
def _exact_int8_here() -> bool:
    """:func:`exact_int8_needed` for this machine (read once)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpuinfo: str | None = f.read()
    except OSError:
        cpuinfo = None
    if hasattr(os, "uname"):
        machine = os.uname().machine
    else:  # not a gateway's OS; platform is not imported on one
        import platform
        machine = platform.machine()
    return exact_int8_needed(machine, cpuinfo)


def make_session(model_path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads and thread spinning off.

    :class:`OnnxModel` opens one single-threaded session per scoring thread instead: for these
    small convolutions, two intra-op threads were slower than one (19-21k against 28-38k windows/s
    in batches of 128, three runs), where two sessions on two threads, each with half the batch,
    scored 49-60k.

    Spinning keeps an idle core busy waiting for work; on a shared gateway CPU
    that costs more than the few microseconds of wake-up it saves. The CPU memory arena and
    memory patterns are off: for models this small they kept 13-19 MB more resident after
    batches of 1 to 256 windows. Up to batches of 64 windows inference was
    no slower without them; at 256 windows it was 25-40 % slower (same-run A/B).

    ``session.x64quantprecision`` is set on x86-64 CPUs without VNNI only
    (:func:`exact_int8_needed`): there onnxruntime's u8s8 kernels add pairs of products in 16
    bits, which int8 weights beyond [-64, 63] can overflow, and the entry makes it compute those
    layers as u8u8 (exact, slower). INT8 models are exported with full 8-bit weights and rely on
    it there. On VNNI CPUs the entry would turn every layer to u8u8 as well, at half the speed.
    """
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = False
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if _exact_int8_here():
        so.add_session_config_entry("session.x64quantprecision", "1")
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        raise CorruptModelError(f"{model_path}: onnxruntime cannot load it "
                                f"({str(exc).splitlines()[0][:200]})") from None


MIN_SPLIT = 16  # windows per thread below which a batch is scored on the calling thread alone


class OnnxModel:
    """Scores raw windows ``(batch, window_len, n_channels)`` float32 with an exported model.

    With ``threads`` > 1 it holds that many single-threaded sessions of the same model; a batch of
    at least ``MIN_SPLIT`` windows per thread is cut into consecutive parts scored at once, one on
    the calling thread and the rest on helper threads (onnxruntime releases the GIL while it runs).
    Results come back in the batch's order, the same numbers one session gives.
    """

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        """Open the session(s) and run one warm-up inference."""
        self.bundle = bundle
        self.threshold = bundle.threshold
        self.channels = bundle.channels
        self.window_len = bundle.window_len
        self.session = make_session(bundle.model_path, 1)
        self._helpers = [make_session(bundle.model_path, 1) for _ in range(threads - 1)]
        self._pool: ThreadPoolExecutor | None = None
        inp = self.session.get_inputs()[0]
        if inp.name != GRAPH_INPUT or [o.name for o in self.session.get_outputs()] != list(GRAPH_OUTPUTS):
            raise CorruptModelError(f"{bundle.model_path}: unexpected graph signature "
                                    f"(input {inp.name!r}, outputs {[o.name for o in self.session.get_outputs()]})")
        warm = np.zeros((1, self.window_len, len(self.channels)), dtype=np.float32)
        self.score_windows(warm)
        for sess in self._helpers:
            sess.run(list(GRAPH_OUTPUTS), {GRAPH_INPUT: warm})

    @classmethod
    def open(cls, bundle_dir: Path, model_file: str | None = None, threads: int = 1) -> OnnxModel:
        """Open a bundle directory (hashes checked) and its default or named model file."""
        return cls(open_bundle(bundle_dir, model_file), threads)

    def score_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(B, L, C)`` raw windows -> ``score (B,)``, ``channel_scores (B, C)``, ``latent_score (B,)``."""
        with np.errstate(over="ignore"):  # beyond float32's range: ±inf, which the graph's Clip holds
            x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.window_len, len(self.channels)):
            raise ModelMismatchError(f"window shape {x.shape} does not match the model's "
                                     f"(batch, {self.window_len}, {len(self.channels)})")
        parts = min(1 + len(self._helpers), x.shape[0] // MIN_SPLIT)
        if parts <= 1:
            score, channel_scores, latent = self.session.run(list(GRAPH_OUTPUTS), {GRAPH_INPUT: x})
            return np.asarray(score), np.asarray(channel_scores), np.asarray(latent)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self._helpers), thread_name_prefix="edge-aae-score")
        cuts = np.linspace(0, x.shape[0], parts + 1).astype(int)
        futures = [self._pool.submit(sess.run, list(GRAPH_OUTPUTS), {GRAPH_INPUT: x[a:b]})
                   for sess, a, b in zip(self._helpers, cuts[1:-1], cuts[2:], strict=False)]
        first = self.session.run(list(GRAPH_OUTPUTS), {GRAPH_INPUT: x[:cuts[1]]})
        results = [first, *(f.result() for f in futures)]
        score, channel_scores, latent = (np.concatenate([np.asarray(r[k]) for r in results]) for k in range(3))
        return score, channel_scores, latent

    @property
    def model_ref(self) -> dict[str, str]:
        """The ``model`` object of score and alert payloads."""
        return {"name": self.bundle.name, "version": self.bundle.version}

    def close(self) -> None:
        """Stop the helper threads (the sessions go with the object)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class BundleScorer:
    """Scores a whole series with a bundle: the torch-free twin of ``AAEDetector.score``."""

    def __init__(self, bundle_dir: Path, model_file: str | None = None, threads: int = 1) -> None:
        """Open the bundle's model."""
        self.scorer = OnnxModel.open(bundle_dir, model_file, threads)

    @property
    def stream_rule(self) -> StreamRule:
        """How the bundle windows a raw series: the daemon's rule."""
        return self.scorer.bundle.stream_rule

    def score(self, data: SensorData, batch_size: int = 256) -> WindowScores:
        """Score every ``stride``-th window of ``data`` (channels matched by name)."""
        s = self.scorer
        data = data.select_channels(s.channels)
        period = s.bundle.manifest.sample_period_s
        windows, ends = stream_windows(data, s.window_len, s.bundle.stride, self.stream_rule, period)
        if ends.size == 0:
            raise DataError(f"{data.path}: too few rows for one window of {s.window_len} (longest usable "
                            f"segment: {longest_segment(data, self.stream_rule, period)} rows)")
        parts = [s.score_windows(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]
        score, channel_scores, latent = (np.concatenate(p) for p in zip(*parts, strict=True))
        rule = s.bundle.manifest.unseen_state
        held = None if rule is None else rule.flags(latent, stream_breaks(ends, s.bundle.stride))
        return WindowScores(ends, data.timestamps[ends], score, channel_scores, latent, s.threshold,
                            list(s.channels), unseen_state=held)
