"""Workstation export toolchain: run directory -> verified, optionally signed ONNX bundle.

Imports ``edge_aae``; ``edge_aae`` never imports this package.
"""

OPSET = 17  # pinned: supported by onnxruntime >= 1.14 on every gateway target we ship
