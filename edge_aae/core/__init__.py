"""What every side may import, the gateway included: numpy only, no torch, no onnx, no ``export``.

Data and windows, the streaming rule, scores, thresholds, metrics, the bundle
contract (:mod:`edge_aae.core.manifest`) and the MQTT protocol
(:mod:`edge_aae.core.protocol`, :mod:`edge_aae.core.contract`).
"""
