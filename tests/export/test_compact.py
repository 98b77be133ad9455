"""Graph tidy-ups of the export: float64 constants stored as float32 where that is exact."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export import OPSET
from export.compact import compact_names, narrow_doubles


def _model(exact: np.ndarray, inexact: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, exact.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, exact.shape[1]])
    nodes = [helper.make_node("MatMul", ["x", "bank"], ["p"]), helper.make_node("Add", ["p", "norm"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(exact, "bank"),
                                                     numpy_helper.from_array(inexact, "norm")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"x": x})[0])


def test_exact_doubles_are_stored_as_float32_and_score_the_same():
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((4, 50)).astype(np.float32).astype(np.float64)
    inexact = rng.standard_normal((1, 50))  # float64 values float32 cannot hold
    x = rng.standard_normal((3, 4))
    before = _model(exact, inexact)
    want = _run(before, x)
    after = compact_names(narrow_doubles(_model(exact, inexact)))
    onnx.checker.check_model(after)
    types = sorted((list(i.dims), i.data_type) for i in after.graph.initializer)
    assert types == [([1, 50], TensorProto.DOUBLE), ([4, 50], TensorProto.FLOAT)]
    assert [n.op_type for n in after.graph.node] == ["Cast", "MatMul", "Add"]
    np.testing.assert_array_equal(_run(after, x), want)
    assert after.ByteSize() < before.ByteSize() - 4 * 50 * 4 + 100
