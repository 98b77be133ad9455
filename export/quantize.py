"""FP32 -> INT8: static QDQ quantization calibrated on training windows, or INT8 weights alone.

Static QDQ (weights and activations in int8) is smaller and faster. Where its noise
reorders the scores (models whose normal reconstruction errors are tiny), the
weight-only form stores int8 weights with one float scale per output channel and
computes in FP32: onnxruntime folds ``Cast`` and ``Mul`` of constants into FP32
weights when the session loads, so it runs at FP32 speed from a file about 3x smaller.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_aae.core.errors import UsageError
from edge_aae.core.manifest import GRAPH_INPUT
from edge_aae.gateway.scorer import make_session
from export.compact import compact_names

log = logging.getLogger(__name__)

# onnxruntime's guidance: uint8 activations (U8S8) on x86-64, int8 (S8S8) on ARM.
ACTIVATION_TYPE = {"x86_64": QuantType.QUInt8, "arm64": QuantType.QInt8}
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
# Relu is quantized too: the quantizer then folds a Relu after a quantized Conv/Gemm into that
# layer's output range instead of leaving DequantizeLinear -> Relu -> QuantizeLinear between
# layers (batch 64: 34 -> 29 us per window on the synthetic model; 8 fewer nodes in its shipped form).
STATIC_OPS = [*QUANTIZED_OPS, "Relu"]


class _WindowReader(CalibrationDataReader):
    def __init__(self, windows: np.ndarray, batch: int = 64) -> None:
        usable = max(batch, len(windows) - len(windows) % batch)  # equal batches (histogram calibrators)
        self._batches = iter([np.ascontiguousarray(windows[i:i + batch], dtype=np.float32)
                              for i in range(0, min(usable, len(windows)), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {GRAPH_INPUT: batch}


# Below this many weights per output channel, per-channel scales, zero points and int32
# bias scales cost more bytes than int8 saves (the decoder's latent -> sequence Gemm has
# latent_dim inputs per output): such weights are quantized per tensor.
MIN_FAN_IN_PER_CHANNEL = 16

# Accuracy-aware fallback, tried in order until the parity gate passes (each with the
# calibrations export.bundle lists): everything quantized; "first": the first layer (it sees
# the scaled raw input, the widest range) kept FP32; "last": the last one (it produces the
# reconstruction whose error is the score).
# "code": the encoder's last layer, whose output (the latent code) is measured against the
# FP32 code bank: a few int8 steps there move every distance. "latent": the decoder's first
# layer too, so that the code never passes through int8 (a code that varies little across
# normal windows within a wide range loses its variation to 255 steps of that range); both are
# small dense layers, the convolutions around them stay int8. "encoder": the whole encoder
# FP32 (its int8 noise reaches the code, and small models' latent scores are that sensitive),
# the decoder int8.
FALLBACKS: tuple[tuple[str, ...], ...] = ((), ("code",), ("first", "code"), ("first", "code", "latent"),
                                          ("first", "last", "code"), ("first", "last", "code", "latent"),
                                          ("encoder",))


def bank_node(model: onnx.ModelProto) -> str | None:
    """The node that compares the latent code with the code bank (a constant of rank >= 2).

    A MatMul (older graphs: Sub) between the code and the bank whose result reaches an
    ``TopK``, ``ArgMin`` or ``ReduceMin`` (the nearest codes) within a few element-wise steps. It stays FP32: a few int8
    steps in the bank would move every distance.
    """
    inits = {i.name: i for i in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Sub") or len(node.input) != 2:
            continue
        if not any(i in inits and len(inits[i].dims) >= 2 for i in node.input):
            continue
        frontier, steps = list(node.output), 0
        while frontier and steps < 4:
            nxt = [c for o in frontier for c in consumers.get(o, [])]
            if any(c.op_type in ("TopK", "ArgMin", "ReduceMin") for c in nxt):
                return str(node.name)
            frontier, steps = [o for c in nxt for o in c.output], steps + 1
    return None


def code_node(model: onnx.ModelProto) -> str | None:
    """The compute node that produces the latent code (the input of the code-bank distance).

    Walking back from the bank node's (:func:`bank_node`) non-constant input through
    non-compute nodes reaches the encoder's last Conv/MatMul/Gemm.
    """
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    bank = bank_node(model)
    for node in model.graph.node:
        if node.name != bank:
            continue
        todo = [i for i in node.input if i not in inits]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            prod = producers.get(name)
            if prod is None or prod.name in seen:
                continue
            seen.add(prod.name)
            if prod.op_type in QUANTIZED_OPS:
                return str(prod.name)
            todo.extend(i for i in prod.input if i not in inits)
    return None


def latent_consumers(model: onnx.ModelProto) -> list[str]:
    """The compute nodes that take the latent code as input (the decoder's first layer), not the bank's.

    Walks forward from the code layer's output (:func:`code_node`) through reshapes and
    transposes to the first Conv/MatMul/Gemm on each path.
    """
    code, bank = code_node(model), bank_node(model)
    producer = next((n for n in model.graph.node if n.name == code), None)
    if producer is None:
        return []
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    found: list[str] = []
    frontier, seen = list(producer.output), set()
    while frontier:
        name = frontier.pop()
        for c in consumers.get(name, []):
            if c.name in seen or c.name == bank:
                continue
            seen.add(c.name)
            if c.op_type in QUANTIZED_OPS:
                found.append(str(c.name))
            elif c.op_type in ("Reshape", "Transpose", "Flatten", "Unsqueeze", "Squeeze", "Identity"):
                frontier.extend(c.output)
    return found


def compute_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes the quantizer may touch, in graph order (the code-bank distance is not one)."""
    bank = bank_node(model)
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.name != bank]


def per_tensor_overrides(model: onnx.ModelProto) -> dict[str, list[dict[str, object]]]:
    """``TensorQuantOverrides`` that make small-fan-in weights per-tensor (symmetric int8)."""
    inits = {i.name: i for i in model.graph.initializer}
    out: dict[str, list[dict[str, object]]] = {}
    for node in model.graph.node:
        if node.op_type not in QUANTIZED_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        dims = list(inits[node.input[1]].dims)
        axis = weight_axis(node)
        fan_in = int(np.prod([d for i, d in enumerate(dims) if i != axis]))
        if fan_in < MIN_FAN_IN_PER_CHANNEL:
            out[node.input[1]] = [{"symmetric": True}]
    return out


def quantize_int8(fp32_path: Path, out_path: Path, calib_windows: np.ndarray, target: str,
                  keep_fp32: tuple[str, ...] = (), percentile: float | None = None) -> list[str]:
    """Quantize Conv/MatMul/Gemm weights (int8, per channel) and their activations.

    Args:
        fp32_path: the FP32 model.
        out_path: where the INT8 QDQ model goes.
        calib_windows: raw training windows ``(n, window_len, C)`` for activation ranges.
        target: ``x86_64`` or ``arm64`` (selects the activation type).
        keep_fp32: ``"first"``, ``"last"``, ``"code"``, ``"latent"`` and/or ``"encoder"``: compute layers
            left in FP32 (see ``FALLBACKS``).
        percentile: None: activation ranges from the calibration windows' extremes (MinMax);
            otherwise each range at this percentile of its histogram (both ends).

    Returns:
        The names of the compute nodes left in FP32.

    Raises:
        UsageError: an unknown target, or no calibration windows.

    """
    if target not in ACTIVATION_TYPE:
        raise UsageError(f"--target {target!r}: the quantizer knows {', '.join(ACTIVATION_TYPE)}")
    if calib_windows.shape[0] == 0:
        raise UsageError("no calibration windows to quantize with")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        compute = compute_nodes(model)
        exclude = ([compute[0]] if "first" in keep_fp32 and compute else []) + (
            [compute[-1]] if "last" in keep_fp32 and len(compute) > 1 else [])
        code = code_node(model) if {"code", "encoder"} & set(keep_fp32) else None
        if code is not None and code not in exclude:
            exclude.append(code)
        if "encoder" in keep_fp32 and code in compute:  # the code layer and every compute layer before it
            exclude += [n for n in compute[:compute.index(code)] if n not in exclude]
        if "latent" in keep_fp32:
            exclude += [n for n in latent_consumers(model) if n not in exclude]
        bank = bank_node(model)
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
            quantize_static(str(pre), str(out_path), _WindowReader(calib_windows),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=ACTIVATION_TYPE[target], weight_type=QuantType.QInt8,
                            op_types_to_quantize=STATIC_OPS, nodes_to_exclude=exclude + ([bank] if bank else []),
                            # full 8-bit weights: on x86-64 CPUs without VNNI, where u8s8 kernels can
                            # overflow, the gateway's sessions convert them to u8u8 (make_session)
                            reduce_range=False,
                            calibrate_method=CalibrationMethod.MinMax if percentile is None
                            else CalibrationMethod.Percentile,
                            extra_options={"TensorQuantOverrides": per_tensor_overrides(model)} | (
                                {} if percentile is None else {"CalibPercentile": percentile}))
    quantized = onnx.load(str(out_path))
    if code is not None and code in exclude:
        _code_in_fp32(quantized, code, bank)
    onnx.save(compact_names(quantized), str(out_path))
    log.info("quantized %s -> %s (%s activations; FP32 kept: %s)", fp32_path.name, out_path.name,
             ACTIVATION_TYPE[target].name, ", ".join(exclude) or "none")
    return exclude


def _code_in_fp32(model: onnx.ModelProto, code: str, bank: str | None) -> None:
    """Let the latent-score path read the FP32 code layer's output, not its int8 round trip.

    The quantizer puts the code through QuantizeLinear -> DequantizeLinear for the decoder's
    first (int8) layer and hands every other consumer the same rounded tensor, so the distance
    to the FP32 code bank would see int8 steps of the code. Consumers other than quantized
    compute layers (the bank's MatMul, a Transpose) are pointed back at the FP32 tensor; the
    decoder keeps its int8 input.
    """
    producer = next((n for n in model.graph.node if n.name == code), None)
    if producer is None:
        return
    fp32 = producer.output[0]
    quant = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == fp32}
    rounded = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in quant}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and node.name != bank:
            continue
        for k, name in enumerate(node.input):
            if name in rounded:
                node.input[k] = fp32


def weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a Conv/Gemm/MatMul weight (input 1)."""
    if node.op_type == "Conv":
        return 0
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if node.op_type == "Gemm" and trans_b else 1


def quantize_weights_int8(fp32_path: Path, out_path: Path) -> int:
    """Store every Conv/Gemm/MatMul weight but the code layer's and the bank's as symmetric int8, per output channel.

    The layer that produces the latent code keeps FP32 weights (see :func:`code_node`): it is
    small, and the latent score compares its output with an FP32 code bank.

    Each weight becomes ``Cast(int8 -> float) * scale``, constant inputs that onnxruntime
    folds back into an FP32 weight at session load (``DequantizeLinear`` would stay in
    the graph and run on every call). Activations and arithmetic stay FP32.

    Args:
        fp32_path: the FP32 model.
        out_path: where the weight-only INT8 model goes.

    Returns:
        How many weight tensors were quantized.

    """
    model = onnx.load(str(fp32_path))
    inits = {i.name: i for i in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    done: set[str] = set()
    code, bank = code_node(model), bank_node(model)
    for node in model.graph.node:
        name = (node.input[1] if node.op_type in QUANTIZED_OPS and len(node.input) > 1
                and node.name not in (code, bank) else "")
        if name in inits and name not in done:
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            axis = weight_axis(node)
            shape = [1] * w.ndim
            shape[axis] = -1
            peak = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis))
            scale = (np.where(peak > 0, peak, 1.0) / 127.0).astype(np.float32).reshape(shape)
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            model.graph.initializer.remove(inits[name])
            model.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                            numpy_helper.from_array(scale, f"{name}_scale")])
            nodes += [helper.make_node("Cast", [f"{name}_int8"], [f"{name}_cast"], name=f"{name}_cast",
                                       to=TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{name}_cast", f"{name}_scale"], [name], name=f"{name}_dequant")]
            done.add(name)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(compact_names(model), str(out_path))
    log.info("quantized %d weight tensors of %s to int8 (FP32 compute) -> %s", len(done), fp32_path.name,
             out_path.name)
    return len(done)


def count_unfused_weight_dequant(model_path: Path) -> int:
    """DequantizeLinear nodes on weights left in onnxruntime's optimized graph.

    Each one means a float kernel runs on dequantized weights instead of an
    integer kernel: such nodes make INT8 slower, not faster.
    """
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(optimized)
        so.intra_op_num_threads = 1
        so.log_severity_level = 3  # the NCHWc serialization notice is expected here
        ort.InferenceSession(str(model_path), sess_options=so, providers=["CPUExecutionProvider"])
        return count_weight_dequant(optimized)


def count_weight_dequant(optimized_path: Path) -> int:
    """DequantizeLinear nodes on weights in an optimized graph onnxruntime wrote (here or on a target)."""
    model = onnx.load(str(optimized_path))
    initializers = {i.name for i in model.graph.initializer}
    return sum(1 for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.input and n.input[0] in initializers)


def latencies_us(model_paths: dict[str, Path], window: np.ndarray, repeats: int = 200,
                 rounds: int = 5) -> dict[str, float]:
    """Median wall time per inference of each model on one thread, in microseconds, measured side by side.

    The models take turns in ``rounds`` rounds of ``repeats / rounds`` calls each, so a burst of
    load on a shared CPU hits all of them rather than whichever was being timed.
    """
    import time

    sessions = {k: make_session(p, threads=1) for k, p in model_paths.items()}
    feed = {GRAPH_INPUT: np.ascontiguousarray(window, dtype=np.float32)}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for session in sessions.values():
        for _ in range(20):
            session.run(None, feed)
    for _ in range(rounds):
        for k, session in sessions.items():
            for _ in range(max(1, repeats // rounds)):
                t0 = time.perf_counter()
                session.run(None, feed)
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v) * 1e6) for k, v in times.items()}

