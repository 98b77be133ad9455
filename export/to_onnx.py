"""Checkpoint -> FP32 ONNX: scaling, model and score normalization in one graph."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from edge_aae.core.manifest import GRAPH_INPUT, GRAPH_OUTPUTS
from edge_aae.train.model import ScoreGraph
from export import OPSET
from export.compact import compact_names

log = logging.getLogger(__name__)



def export_fp32(scorer: ScoreGraph, path: Path, window_len: int, n_channels: int) -> None:
    """Write the scoring module as ONNX.

    Input ``window``: float32 ``[batch, window_len, n_channels]`` in raw sensor units.
    Outputs ``score [batch]``, ``channel_scores [batch, n_channels]``, ``latent_score [batch]``.
    """
    scorer = scorer.eval()
    dummy = torch.zeros(2, window_len, n_channels)
    dynamic = {GRAPH_INPUT: {0: "batch"}} | {name: {0: "batch"} for name in GRAPH_OUTPUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(scorer, (dummy,), str(path), input_names=[GRAPH_INPUT], output_names=list(GRAPH_OUTPUTS),
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)
    onnx.save(compact_names(onnx.load(str(path))), str(path))
    log.info("exported FP32 ONNX to %s (opset %d)", path, OPSET)
