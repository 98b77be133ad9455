"""``edge-aae bench speed``: torch eager FP32 vs onnxruntime FP32 vs the bundle's model as shipped.

One thread everywhere, batch 1, 64 and 256, measured in one process so the
ratios compare like with like on a shared machine.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from edge_aae.core.manifest import DEFAULT_MODEL, GRAPH_INPUT, MANIFEST
from edge_aae.gateway.scorer import make_session
from edge_aae.train.detector import AAEDetector
from export.bench.common import cpuinfo_value, markdown_table
from export.bundle import FP32_MODEL, build_bundle


def _median_s(fn: Callable[[], object], min_time_s: float = 1.0, min_reps: int = 20) -> float:
    for _ in range(5):
        fn()
    times: list[float] = []
    t_end = time.perf_counter() + min_time_s
    while len(times) < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_speed_bench(run_dir: Path) -> str:
    """Measure and return a Markdown table with ratios and file sizes."""
    torch.set_num_threads(1)
    det = AAEDetector.load(run_dir)
    calib = det.load_calibration()
    windows = calib["val"]
    reps = int(np.ceil(256 / len(windows)))
    batch256 = np.ascontiguousarray(np.tile(windows, (reps, 1, 1))[:256], dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        build_bundle(run_dir, bundle, force=True)
        shipped = json.loads((bundle / MANIFEST).read_text())["models"][DEFAULT_MODEL]
        form = (f"{shipped['kind'].upper()} as shipped" + (
            f" ({shipped['quantization']}" + (f", FP32 layers: {', '.join(shipped['fp32_layers'])}"
                                               if shipped.get("fp32_layers") else "") + ")"
            if shipped["kind"] == "int8" else ""))
        paths = {"onnxruntime FP32": bundle / FP32_MODEL, f"onnxruntime {form}": bundle / DEFAULT_MODEL}
        sizes = {"fp32": paths["onnxruntime FP32"].stat().st_size, "shipped": (bundle / DEFAULT_MODEL).stat().st_size}
        sessions = {name: make_session(path, 1) for name, path in paths.items()}
        results: dict[tuple[str, int], float] = {}
        for batch in (1, 64, 256):
            x = batch256[:batch]
            xt = torch.from_numpy(x)
            with torch.no_grad():
                results[("torch eager FP32", batch)] = _median_s(partial(det.scorer_, xt)) / batch
            for name, sess in sessions.items():
                results[(name, batch)] = _median_s(partial(sess.run, None, {GRAPH_INPUT: x})) / batch
    rows = []
    for (method, batch), sec in results.items():
        base = results[("torch eager FP32", batch)]
        rows.append([method, batch, f"{sec * 1e6:.1f}", f"{1 / sec:,.0f}", f"{base / sec:.2f}x"])
    table = markdown_table(["path", "batch", "µs per window", "windows/s", "speed-up vs torch eager"], rows)
    return (table + f"\n\nOne thread (`torch.set_num_threads(1)`, onnxruntime intra-op 1, spinning off); "
            f"median over ≥1 s per cell. Model: `{run_dir}` ({det.config_.arch}, window_len "
            f"{det.config_.window_len}, {len(det.channels_)} channels), exported as the bundle ships it "
            f"(`model.onnx`; batch 64 is the daemon's default `batch_max`). File sizes: FP32 "
            f"{sizes['fp32'] / 1024:.1f} KiB, as shipped {sizes['shipped'] / 1024:.1f} KiB "
            f"({sizes['fp32'] / sizes['shipped']:.2f}x smaller). This CPU's integer dot-product instructions: "
            f"{_int8_features()} (INT8's lead over FP32 at batch 1 depends on them).")


def _int8_features() -> str:
    """The CPU flags onnxruntime's int8 kernels use on x86 (``avx512_vnni``, ``avx_vnni``, ``amx_int8``), or none."""
    line = cpuinfo_value("flags", "Features")
    if line is None:
        return "unknown"
    flags = line.split()
    found = [x for x in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm") if x in flags]
    return ", ".join(f"`{x}`" for x in found) or "none"
