"""Which model scores which asset: bundles opened once at start, checked against the config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge_aae.core.errors import ConfigError, EdgeAAEError, ModelMismatchError
from edge_aae.gateway.config import GatewayConfig
from edge_aae.gateway.payload import channel_lookup
from edge_aae.gateway.scorer import OnnxModel

log = logging.getLogger(__name__)


@dataclass
class ModelSlot:
    """One opened bundle and its session; ``key`` names it in logs and status."""

    key: str
    scorer: OnnxModel
    asset: str = ""  # '' for the default model
    previous: OnnxModel | None = None  # kept during the health window after an update
    health_until: float = 0.0
    update_id: str = ""
    latency_ms: float | None = None  # running mean per window of this slot's current model
    baseline_ms: float | None = None  # the previous model's, frozen at the swap
    rss_at_swap: float = 0.0
    health_batches: int = 0
    nonfinite_run: int = 0  # consecutive batches with a non-finite score

    @property
    def model_ref(self) -> dict[str, str]:
        """The ``model`` object of score and alert payloads."""
        return self.scorer.model_ref

    @property
    def info(self) -> dict[str, str]:
        """``{"name", "version", "file"}`` for payloads and status."""
        b = self.scorer.bundle
        return {"name": b.name, "version": b.version, "file": b.model_file}


@dataclass
class AssetBinding:
    """An asset's model and sensor-name mapping (``lookup``: name -> input column)."""

    slot: ModelSlot
    channel_map: dict[str, str] = field(default_factory=dict)
    lookup: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Precompute the name lookup the payload parser uses."""
        self.lookup = channel_lookup(self.slot.scorer.channels, self.channel_map)


def _open(path: str, key: str, model_file: str, threads: int, asset: str = "") -> ModelSlot:
    try:
        scorer = OnnxModel.open(Path(path), model_file or None, threads)
    except EdgeAAEError as exc:
        raise ConfigError(f"{key}: cannot use bundle {path}: {exc}") from None
    log.info("loaded %s for %s: %s %s (%s, %d channels, window %d)", path, key, scorer.bundle.name,
             scorer.bundle.version, scorer.bundle.model_file, len(scorer.channels), scorer.window_len)
    return ModelSlot(key, scorer, asset)


def _check_map(key: str, channel_map: dict[str, str], slot: ModelSlot) -> None:
    wrong = sorted(v for v in channel_map.values() if v not in slot.scorer.channels)
    if wrong:
        raise ModelMismatchError(f"{key}: maps to {', '.join(wrong)}, not channels of "
                                 f"{slot.scorer.bundle.path} (has {', '.join(slot.scorer.channels)})")
    targets = list(channel_map.values())
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        raise ModelMismatchError(f"{key}: several sensors map to {', '.join(dup)}")


class ModelRegistry:
    """Resolves assets to models; every bundle is opened, warmed up and checked at construction.

    Raises (at construction):
        ConfigError: a bundle is missing or corrupt (names the config key and path).
        ModelMismatchError: a channel mapping names channels the bundle does not have.
    """

    def __init__(self, cfg: GatewayConfig) -> None:
        """Open the default and per-asset bundles."""
        m, threads = cfg.models, cfg.runtime.threads
        self.default: ModelSlot | None = (
            _open(m.default, "models.default", m.model_file, threads) if m.default else None)
        if self.default is not None:
            _check_map("models.channel_map", m.channel_map, self.default)
        self.bindings: dict[str, AssetBinding] = {}
        for asset, spec in m.assets.items():
            slot = (_open(spec.bundle, f"models.assets.{asset}.bundle", m.model_file, threads, asset)
                    if spec.bundle else self.default)
            assert slot is not None  # config validation requires a bundle or a default
            channel_map = {**m.channel_map, **spec.channel_map}
            _check_map(f"models.assets.{asset}.channel_map", channel_map, slot)
            self.bindings[asset] = AssetBinding(slot, channel_map)
        self._default_binding = (AssetBinding(self.default, dict(m.channel_map))
                                 if self.default is not None else None)

    def binding(self, asset: str) -> AssetBinding | None:
        """The asset's binding; None when no model serves it."""
        return self.bindings.get(asset, self._default_binding)

    def slots(self) -> list[ModelSlot]:
        """Every distinct opened model."""
        seen: dict[int, ModelSlot] = {}
        for s in [self.default, *(b.slot for b in self.bindings.values())]:
            if s is not None:
                seen[id(s)] = s
        return list(seen.values())

    def slot_for_update(self, asset: str) -> ModelSlot | None:
        """The slot an update for ``asset`` ('' = default) replaces."""
        if not asset:
            return self.default
        b = self.bindings.get(asset)
        return b.slot if b is not None and b.slot is not self.default else None

    def describe(self) -> dict[str, dict[str, str]]:
        """For the status topic: ``{"default" | asset: {"name", "version", "file"}}``."""
        out = {"default": self.default.info} if self.default is not None else {}
        out.update({a: b.slot.info for a, b in self.bindings.items()})
        return out
