"""Shorter names inside an ONNX graph.

The exporters name every tensor after its module path
(``/decoder/convs/convs.0/Relu_output_0``) and the quantizer appends more
(``..._QuantizeLinear_Output``). In a model of a few hundred kilobytes those
strings are a noticeable part of the file, and they are the same in the FP32
and INT8 files, so they also shrink the INT8 model's size advantage. The graph's
inputs and outputs keep their names; everything else gets a short one.
"""

from __future__ import annotations

import onnx


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
