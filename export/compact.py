"""Shorter names inside an ONNX graph.

The exporters name every tensor after its module path
(``/decoder/convs/convs.0/Relu_output_0``) and the quantizer appends more
(``..._QuantizeLinear_Output``). In a model of a few hundred kilobytes those
strings are a noticeable part of the file, and they are the same in the FP32
and INT8 files, so they also shrink the INT8 model's size advantage. The graph's
inputs and outputs keep their names; everything else gets a short one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def compact_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rename internal tensors to ``t<i>``, initializers to ``w<i>``, nodes to ``n<i>`` (in place)."""
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return model  # control flow with subgraphs: names are scoped; leave them alone
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    rename: dict[str, str] = {}
    for i, init in enumerate(graph.initializer):
        if init.name not in keep:
            rename[init.name] = f"w{i}"
    counter = 0
    for node in graph.node:
        for name in node.output:
            if name and name not in keep and name not in rename:
                rename[name] = f"t{counter}"
                counter += 1
    for init in graph.initializer:
        init.name = rename.get(init.name, init.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
    for vi in graph.value_info:
        vi.name = rename.get(vi.name, vi.name)
    del graph.value_info[:]  # shape hints for internal tensors: onnxruntime infers them again
    return model


def narrow_doubles(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store float64 initializers that float32 holds exactly as float32 and a ``Cast`` back (in place).

    The code-bank ranking runs in float64 (``ScoreGraph.latent_distance``), and the exporter
    folds the cast of the float32 bank into a float64 constant twice its size: the largest
    tensor of an INT8 model. onnxruntime folds the ``Cast`` again when the session loads, so
    the arithmetic is the same. Returns the model.
    """
    graph = model.graph
    casts: list[onnx.NodeProto] = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.DOUBLE:
            continue
        values = numpy_helper.to_array(init)
        narrow = values.astype(np.float32)
        if not np.array_equal(narrow.astype(np.float64), values):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(narrow, f"{name}_f32"))
        casts.append(helper.make_node("Cast", [f"{name}_f32"], [name], name=f"{name}_widen",
                                      to=onnx.TensorProto.DOUBLE))
    if casts:
        nodes = casts + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
    return model
