"""The bundle contract: what ``manifest.json`` holds, typed (numpy only).

``export`` fills in a :class:`Manifest`; the gateway, ``score BUNDLE`` and the
updater read one back with :meth:`Manifest.from_json`, which names the key that is
wrong when a manifest is damaged. The ONNX graph's input and output names live
here too, so the exporter, the parity checks and the gateway agree on them.

A bundle directory holds ``model.onnx`` (the default model for the device),
``model.fp32.onnx``, ``manifest.json`` and, when signed, ``manifest.sig`` (an
Ed25519 signature over the exact bytes of ``manifest.json``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.errors import CorruptModelError
from edge_aae.core.streaming import DEFAULT_GAP_FACTOR, StreamRule
from edge_aae.core.unseen_state import UnseenStateRule

MANIFEST_SCHEMA_VERSION = 1
METADATA_KEY = "edge_aae_manifest"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
DEFAULT_MODEL = "model.onnx"
FP32_MODEL = "model.fp32.onnx"
INT8_MODEL = "model.int8.onnx"  # export's working name; shipped as model.onnx when chosen
MODEL_FILE_RE = re.compile(r"model(\.[a-z0-9]{1,16})?\.onnx")
SCORE_DIRECTION = "higher_is_anomalous"

# The graph's signature: raw windows in, scores out.
GRAPH_INPUT = "window"
GRAPH_OUTPUTS = ("score", "channel_scores", "latent_score")

REQUIRED_KEYS = ("schema_version", "model", "channels", "window_len", "stride", "sample_period_s",
                 "models", "default_model", "score_direction", "files")


def is_model_file(name: object) -> bool:
    """Whether a manifest ``files`` key is a plain model file name of a bundle (no paths)."""
    return isinstance(name, str) and MODEL_FILE_RE.fullmatch(name) is not None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """A float32 array as ``{"dtype", "shape", "b64"}``: exact and far shorter than a JSON list."""
    a32 = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "float32", "shape": list(a32.shape), "b64": base64.b64encode(a32.tobytes()).decode("ascii")}


def decode_array(obj: Any, where: str = "array") -> np.ndarray:
    """Inverse of :func:`encode_array`; also accepts a plain nested list.

    Raises:
        CorruptModelError: the object is not a well-formed encoded array.

    """
    if isinstance(obj, list):
        return np.asarray(obj, dtype=np.float32)
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
        arr = np.frombuffer(raw, dtype="<f4").reshape([int(d) for d in obj["shape"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptModelError(f"{where}: not an encoded float32 array ({exc})") from None
    return arr.astype(np.float32)


@dataclass(frozen=True)
class ModelInfo:
    """Who the model is: name, version (dot-separated integers; larger is newer), provenance."""

    name: str
    version: str
    created: str = ""
    arch: str = ""
    prior: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One model file of the bundle: its kind, its own threshold, and how it was quantized."""

    kind: str
    threshold: float
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (``kind``, ``threshold`` and the facts flattened beside them)."""
        return {"kind": self.kind, "threshold": self.threshold, **self.facts}


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest. Scores are higher-is-anomalous; thresholds are in score units."""

    model: ModelInfo
    channels: tuple[str, ...]
    window_len: int
    stride: int
    sample_period_s: float
    models: dict[str, ModelEntry]
    default_model: str = DEFAULT_MODEL
    default_reason: str = ""
    score_stat: str = "error"
    threshold_method: str = ""
    target_far: float = 0.0
    target: str = ""
    opset: int = 0
    stream: StreamRule = StreamRule()
    training_data_fingerprint: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    golden: list[dict[str, Any]] = field(default_factory=list)
    golden_tolerance: dict[str, float] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what the gateway's drift monitor compares with: channel_low / channel_high, the 0.5th and
    # 99.5th percentiles of normal training windows' per-channel means (raw units)
    monitor: dict[str, Any] = field(default_factory=dict)
    # the latent score's sustained-excess rule (edge_aae.core.unseen_state); None: the model has none
    unseen_state: UnseenStateRule | None = None

    def threshold(self, model_file: str | None = None) -> float:
        """The threshold calibrated for ``model_file`` (default: the default model)."""
        return self.models[model_file or self.default_model].threshold

    def to_json(self, with_files: bool = True) -> dict[str, Any]:
        """The ``manifest.json`` object; without ``files`` for embedding in a model file."""
        n_ch = len(self.channels)
        out: dict[str, Any] = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "model": {"name": self.model.name, "version": self.model.version, "created": self.model.created,
                      "arch": self.model.arch, "prior": self.model.prior},
            "channels": list(self.channels),
            "window_len": self.window_len,
            "stride": self.stride,
            "sample_period_s": self.sample_period_s,
            "score_direction": SCORE_DIRECTION,
            "score_stat": self.score_stat,
            # the graph's signature, derived for readers of the file: never read back
            "inputs": {GRAPH_INPUT: {"dtype": "float32", "shape": ["batch", self.window_len, n_ch],
                                     "units": "raw sensor units"}},
            "outputs": {GRAPH_OUTPUTS[0]: ["batch"], GRAPH_OUTPUTS[1]: ["batch", n_ch], GRAPH_OUTPUTS[2]: ["batch"]},
            "default_model": self.default_model,
            "default_reason": self.default_reason,
            "models": {name: e.to_json() for name, e in self.models.items()},
            "threshold_method": self.threshold_method,
            "target_far": self.target_far,
            "target": self.target,
            "opset": self.opset,
            "stream": self.stream.to_json(),
            "training_data_fingerprint": self.training_data_fingerprint,
            "versions": dict(self.versions),
            "golden": list(self.golden),
            "golden_tolerance": dict(self.golden_tolerance),
            "monitor": dict(self.monitor),
            "unseen_state": None if self.unseen_state is None else self.unseen_state.to_json(),
        }
        if with_files:
            out["files"] = {k: dict(v) for k, v in self.files.items()}
        return out

    @classmethod
    def from_json(cls, d: Any, where: str = MANIFEST) -> Manifest:
        """Parse and check a manifest object.

        Raises:
            CorruptModelError: a missing key or a value of the wrong kind, named with ``where``.

        """
        if not isinstance(d, dict):
            raise CorruptModelError(f"{where}: not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise CorruptModelError(f"{where}: missing key(s) {', '.join(missing)}")
        if d["schema_version"] != MANIFEST_SCHEMA_VERSION:
            raise CorruptModelError(f"{where}: schema_version {str(d['schema_version'])[:20]!r} is not supported "
                                    f"(expects {MANIFEST_SCHEMA_VERSION})")

        def bad(key: str, what: str) -> CorruptModelError:
            return CorruptModelError(f"{where}: {key} must be {what}")

        model = d["model"]
        if not isinstance(model, dict) or not all(isinstance(model.get(k), str) for k in ("name", "version")):
            raise bad("model", "an object with a name and a version (strings)")
        channels = d["channels"]
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
            raise bad("channels", "a non-empty list of names")
        ints = {}
        for key in ("window_len", "stride"):
            v = d[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(key, "an integer >= 1")
            ints[key] = v
        period = d["sample_period_s"]
        if not isinstance(period, (int, float)) or isinstance(period, bool) or not 0 < period < float("inf"):
            raise bad("sample_period_s", "a positive number of seconds")
        if d["score_direction"] != SCORE_DIRECTION:
            raise bad("score_direction", repr(SCORE_DIRECTION))
        models: dict[str, ModelEntry] = {}
        if not isinstance(d["models"], dict) or not d["models"]:
            raise bad("models", "a table of model files")
        for name, e in d["models"].items():
            if not isinstance(e, dict) or not isinstance(e.get("threshold"), (int, float)):
                raise bad(f"models.{name}", "an object with a numeric threshold")
            facts = {k: v for k, v in e.items() if k not in ("kind", "threshold")}
            models[str(name)] = ModelEntry(str(e.get("kind", "")), float(e["threshold"]), facts)
        if not isinstance(d["files"], dict):
            raise bad("files", "a table of file names")
        stream = d.get("stream")
        if stream is None:  # bundles written before the rule had its own key
            stream = {"gap_factor": d.get("data", {}).get("max_gap_factor", DEFAULT_GAP_FACTOR)}
        gap = stream.get("gap_factor") if isinstance(stream, dict) else None
        if not isinstance(gap, (int, float)) or isinstance(gap, bool) or not 1 < gap < float("inf"):
            raise bad("stream.gap_factor", "a number > 1")
        if stream.get("missing", "drop") != "drop":
            raise bad("stream.missing", "'drop'")
        try:
            unseen = UnseenStateRule.from_json(d.get("unseen_state"), "unseen_state")
        except ValueError as exc:
            raise bad("unseen_state", f"null or an object with level, span and share ({exc})") from None
        info = ModelInfo(model["name"], model["version"], str(model.get("created", "")),
                         str(model.get("arch", "")), str(model.get("prior", "")))
        return cls(
            model=info, channels=tuple(channels), window_len=ints["window_len"], stride=ints["stride"],
            sample_period_s=float(period), models=models, default_model=str(d["default_model"]),
            default_reason=str(d.get("default_reason", "")), score_stat=str(d.get("score_stat", "error")),
            threshold_method=str(d.get("threshold_method", "")), target_far=float(d.get("target_far", 0.0)),
            target=str(d.get("target", "")), opset=int(d.get("opset", 0)), stream=StreamRule(float(gap)),
            training_data_fingerprint=str(d.get("training_data_fingerprint", "")),
            versions=dict(d.get("versions", {})), golden=list(d.get("golden", [])),
            golden_tolerance={str(k): float(v) for k, v in dict(d.get("golden_tolerance", {})).items()},
            files=dict(d["files"]), monitor=dict(d["monitor"]) if isinstance(d.get("monitor"), dict) else {},
            unseen_state=unseen)
