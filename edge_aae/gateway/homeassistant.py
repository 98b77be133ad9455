"""Home Assistant MQTT discovery: announce each asset, and withdraw the announcements when disabled.

Per asset, two retained config messages under the discovery prefix: a ``problem``
binary sensor that is ON while an alert is raised, and a score sensor. Both use
the gateway's status topic for availability. The topics announced are recorded
in ``OUTBOX_DIR/homeassistant.json`` so that a later run with the option off can
clear them (an empty retained payload removes an entity from Home Assistant).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from edge_aae.core.protocol import Topics

log = logging.getLogger(__name__)


def _object_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def discovery_messages(prefix: str, topics: Topics, asset: str, model: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{config topic: payload}`` for one asset."""
    node = _object_id(f"edge_aae_{topics.gateway}")
    uid = _object_id(f"edge_aae_{topics.gateway}_{asset}")
    device = {"identifiers": [uid], "name": f"{asset} ({topics.gateway})", "manufacturer": "edge-aae",
              "model": model.get("name", ""), "sw_version": model.get("version", ""),
              "via_device": node}
    availability = {"availability_topic": topics.status, "availability_template": "{{ value_json.state }}",
                    "payload_available": "online", "payload_not_available": "offline"}
    return {
        f"{prefix}/binary_sensor/{node}/{_object_id(asset)}_alert/config": {
            "name": "Anomaly", "unique_id": f"{uid}_alert", "device_class": "problem",
            "state_topic": topics.alert(asset),
            "value_template": "{{ 'ON' if value_json.event == 'raised' else 'OFF' }}",
            "json_attributes_topic": topics.alert(asset), "device": device, **availability},
        f"{prefix}/sensor/{node}/{_object_id(asset)}_score/config": {
            "name": "Anomaly score", "unique_id": f"{uid}_score", "state_topic": topics.score(asset),
            "value_template": "{{ value_json.score | round(2) }}", "state_class": "measurement",
            "device": device, **availability},
    }


class Announcements:
    """The discovery topics this gateway has announced, persisted next to the outbox."""

    def __init__(self, state_dir: Path) -> None:
        """Load the record (missing or unreadable: nothing announced)."""
        self.path = state_dir / "homeassistant.json"
        try:
            self.topics: set[str] = set(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            self.topics = set()

    def add(self, topics: list[str]) -> None:
        """Record announced topics."""
        if not set(topics) <= self.topics:
            self.topics |= set(topics)
            self._save()

    def clear(self) -> list[str]:
        """Forget everything; returns the topics to withdraw."""
        out = sorted(self.topics)
        self.topics = set()
        self.path.unlink(missing_ok=True)
        return out

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self.topics)), encoding="utf-8")
        tmp.replace(self.path)
