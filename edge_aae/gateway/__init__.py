"""The gateway runtime: onnxruntime + numpy (+ paho-mqtt), never torch, never ``export/``."""
