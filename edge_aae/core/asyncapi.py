"""Build ``docs/asyncapi.yaml`` (AsyncAPI 3.0) from the shipped JSON Schemas.

``python -m edge_aae.core.asyncapi > docs/asyncapi.yaml`` regenerates it; a test
checks the committed file matches, so the contract and the code cannot drift.
PyYAML is needed only here (a development dependency).
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from edge_aae import __version__
from edge_aae.core import protocol as P
from edge_aae.core.contract import load_schema
from edge_aae.core.protocol import Topics

BINDING = "0.2.0"
SCHEMA_FORMAT = "application/schema+json;version=draft-07"

EXAMPLES: dict[str, dict[str, Any]] = {
    "readings": {"ts": 1700000000.5, "values": {"speed_rpm": 1480.2, "current_a": 12.1, "voltage_v": 400.3,
                                                 "vibration_mm_s": 2.1, "motor_temp_c": 61.0,
                                                 "bearing_temp_c": 48.2, "pressure_bar": 4.1, "flow_m3h": 31.7},
                 "seq": 1042},
    "score": {"ts": 1700000000.5, "asset": "pump7", "score": 3.42, "threshold": 41.3, "latent_score": -0.21,
              "channel_scores": {"speed_rpm": 0.9, "current_a": 1.1, "voltage_v": 0.8, "vibration_mm_s": 1.4,
                                 "motor_temp_c": 0.7, "bearing_temp_c": 1.0, "pressure_bar": 0.9, "flow_m3h": 1.2},
              "model": {"name": "pump", "version": "2026.11.23.1200"}},
    "alert": {"id": "3f1c9a0e7b2d4c11-raised", "alert_id": "3f1c9a0e7b2d4c11", "event": "raised",
              "gateway": "rpi4-line2", "asset": "pump7", "ts": 1700000123.0, "since": 1700000120.0,
              "score": 87.5, "peak_score": 87.5, "threshold": 41.3,
              "top_channels": [{"channel": "flow_m3h", "share": 0.81}, {"channel": "pressure_bar", "share": 0.07},
                               {"channel": "current_a", "share": 0.04}],
              "model": {"name": "pump", "version": "2026.11.23.1200"}, "cause": "score"},
    "status": {"state": "online", "gateway": "rpi4-line2", "ts": 1700000200.0, "since": 1699990000.0,
               "models": {"default": {"name": "pump", "version": "2026.11.23.1200", "file": "model.onnx"}},
               "healthy": True, "assets": ["pump7"], "assets_total": 1,
               "stats": {"readings_in": 86400, "windows_scored": 86369, "alerts_raised": 2, "alerts_cleared": 2,
                         "messages_rejected": 3, "drops": {"invalid_json": 1, "late": 2},
                         "inference_ms_p50": 0.04, "inference_ms_p99": 0.2, "queue_depth": 0, "outbox_depth": 0,
                         "rss_mb": 74.0}},
    "update_chunk": {"update_id": "9a1b2c3d4e5f6071", "kind": "chunk", "index": 0, "data": "dXN0YXIAMDAgMDAw"},
    "model_outcome": {"gateway": "rpi4-line2", "ts": 1700000400.0, "event": "refused",
                      "update_id": "9a1b2c3d4e5f6071", "asset": "", "version": "2026.11.20.0900",
                      "reason": "version 2026.11.20.0900 is not newer than the installed 2026.11.23.1200"},
    "drift": {"asset": "pump7", "gateway": "rpi4-line2", "state": "drifting", "since": 1700003600.0,
              "ts": 1700003660.0, "figures": {"windows": 1800, "alert_rate": 0.004, "alert_rate_sustained": 0.003,
                                              "target_far": 0.001, "latent_median": 3.4, "max_outside_share": 0.31},
              "channels": ["current_a"], "outside_share": {"current_a": 0.31},
              "model": {"name": "pump", "version": "2026.11.23.1200"}},
    "feedback": {"command": "label", "id": "c0ffee0123456789", "alert_id": "3f1c9a0e7b2d4c11",
                 "label": "false_alarm", "note": "valve test", "by": "ops", "ts": 1700000500.0},
    "feedback_state": {"gateway": "rpi4-line2", "ts": 1700000501.0, "mutes": {"pump3": 1700007700.0},
                       "acked": 4, "labelled": 1, "refused": 0, "labelled_kept": 1,
                       "recent": [{"id": "c0ffee0123456789", "command": "label", "outcome": "applied",
                                   "detail": "pump7: labelled false_alarm; 412 readings kept", "ts": 1700000501.0}]},
    "probe": {"probe": "5f0c2a9e1b7d4c33", "gateway": "rpi4-line2", "ts": 1700000202.0},
    "error": {"ts": 1700000201.0, "gateway": "rpi4-line2", "asset": "pump7", "reason": "missing_channel",
              "detail": "missing flow_m3h"},
}

OFFLINE_EXAMPLE = {"state": "offline", "gateway": "rpi4-line2", "ts": 1700000300.0}


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with local ``$ref`` replaced by their targets and ``$defs``/``$schema``/``$id`` removed."""
    root = copy.deepcopy(schema)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target: Any = root
                for part in node["$ref"][2:].split("/"):
                    target = target[part]
                return walk(copy.deepcopy(target))
            return {k: walk(v) for k, v in node.items() if k not in ("$defs", "$schema", "$id")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(root)
    return out


def _params(*names: str) -> dict[str, Any]:
    desc = {"root": ("Topic root of the deployment (gateway config `topic_root`).", "edge-aae"),
            "gateway": ("Gateway id (config `gateway_id` or `--gateway`).", None),
            "asset": ("Asset name: the last level of the readings topic.", None)}
    out = {}
    for n in names:
        text, default = desc[n]
        out[n] = {"description": text} | ({"default": default} if default else {})
    return out


def build_document() -> dict[str, Any]:
    """The AsyncAPI document as a dict."""
    messages = {
        "readings": ("Sensor readings", "One reading or a batch for one asset."),
        "score": ("Window score", "Score and per-channel contributions of the latest window; higher is more "
                                  "anomalous."),
        "alert": ("Alert raised or cleared", "Delivered at least once (QoS 1 from a durable outbox): drop repeats "
                                            "by `id`."),
        "drift": ("Drift and health of an asset's model", "Retained, on a change of state and every "
                                                          "`monitor.publish_interval_s`: `ok`, `drifting` (the "
                                                          "alert rate, the latent codes or a channel's range moved "
                                                          "away from training) or `retrain` (drifting for long)."),
        "feedback": ("Operator feedback", "`edge-aae ack`, `mute`, `label` and `collect`; the gateway applies "
                                          "each between batches and confirms it on the feedback state."),
        "feedback_state": ("Feedback state", "Retained after every command: mutes in force, counts, the recent "
                                             "commands with `applied` or `refused` and why."),
        "status": ("Gateway status", "Retained. `online` with models and running stats (every minute), "
                                     "`offline` on clean shutdown and as the last will."),
        "error": ("Rejected input", "Every rejected input with the asset and the reason (rate-limited)."),
        "update_chunk": ("Model update message", "A signed header, then slices of a signed bundle (`edge-aae "
                                                 "deploy`); only the model owner may publish here."),
        "model_outcome": ("Model update outcome", "Retained: installed, refused (with the reason) or rolled back."),
        "probe": ("Readings-path probe", "The daemon's own message to itself through its readings subscription; "
                                         "when probes stop coming back it reports itself unhealthy."),
    }
    components_messages = {}
    for name, (title, description) in messages.items():
        examples = [{"name": name, "payload": EXAMPLES[name]}]
        if name == "status":
            examples.append({"name": "offline", "payload": OFFLINE_EXAMPLE})
        components_messages[name] = {
            "name": name, "title": title, "summary": description, "contentType": "application/json",
            "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": inline_refs(load_schema(name))},
            "examples": examples,
        }
    t = Topics("{root}", "{gateway}")
    channels = {
        "sensors": {"address": t.sensors("{asset}"), "parameters": _params("root", "gateway", "asset"),
                    "messages": {"readings": {"$ref": "#/components/messages/readings"}},
                    "description": "Readings in; the daemon subscribes to `{root}/{gateway}/sensors/+` with QoS 1."},
        "score": {"address": t.score("{asset}"), "parameters": _params("root", "gateway", "asset"),
                  "messages": {"score": {"$ref": "#/components/messages/score"}}},
        "alert": {"address": t.alert("{asset}"), "parameters": _params("root", "gateway", "asset"),
                  "messages": {"alert": {"$ref": "#/components/messages/alert"}}},
        "drift": {"address": t.drift("{asset}"), "parameters": _params("root", "gateway", "asset"),
                  "messages": {"drift": {"$ref": "#/components/messages/drift"}}},
        "feedback": {"address": t.feedback, "parameters": _params("root", "gateway"),
                     "messages": {"feedback": {"$ref": "#/components/messages/feedback"}}},
        "feedbackState": {"address": t.feedback_state, "parameters": _params("root", "gateway"),
                          "messages": {"feedback_state": {"$ref": "#/components/messages/feedback_state"}}},
        "status": {"address": t.status, "parameters": _params("root", "gateway"),
                   "messages": {"status": {"$ref": "#/components/messages/status"}}},
        "errors": {"address": t.errors, "parameters": _params("root", "gateway"),
                   "messages": {"error": {"$ref": "#/components/messages/error"}}},
        "modelUpdate": {"address": t.model_update, "parameters": _params("root", "gateway"),
                        "messages": {"update_chunk": {"$ref": "#/components/messages/update_chunk"}}},
        "model": {"address": t.model, "parameters": _params("root", "gateway"),
                  "messages": {"model_outcome": {"$ref": "#/components/messages/model_outcome"}}},
        "probe": {"address": t.probe, "parameters": _params("root", "gateway"),
                  "messages": {"probe": {"$ref": "#/components/messages/probe"}},
                  "description": "Reserved: not an asset. Needs the gateway's write access to its own sensors "
                                 "topics (the README's ACL gives it `readwrite ROOT/GW/#`)."},
    }

    def op(action: str, channel: str, message: str, qos: int, retain: bool,
           summary: str) -> dict[str, Any]:
        return {"action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary,
                "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
                "bindings": {"mqtt": {"qos": qos, "retain": retain, "bindingVersion": BINDING}}}

    operations = {
        "receiveReadings": op("receive", "sensors", "readings", P.SENSOR_QOS, False,
                              "The daemon reads sensor readings."),
        "sendScore": op("send", "score", "score", P.SCORE_QOS, False,
                        "A score for every scored window (configurable)."),
        "sendAlert": op("send", "alert", "alert", P.ALERT_QOS, False, "An alert raised or cleared."),
        "sendDrift": op("send", "drift", "drift", P.DRIFT_QOS, True,
                        "Drift state of an asset's model, retained."),
        "receiveFeedback": op("receive", "feedback", "feedback", P.FEEDBACK_QOS, False,
                              "Operator commands (when feedback is enabled, the default)."),
        "sendFeedbackState": op("send", "feedbackState", "feedback_state", P.FEEDBACK_QOS, True,
                                "Outcome of operator commands, retained."),
        "sendStatus": op("send", "status", "status", P.STATUS_QOS, True, "Gateway status, retained."),
        "sendError": op("send", "errors", "error", P.ERRORS_QOS, False, "A rejected input."),
        "receiveModelUpdate": op("receive", "modelUpdate", "update_chunk", P.UPDATE_QOS, False,
                                 "Signed bundle chunks (when updates are enabled)."),
        "sendModelOutcome": op("send", "model", "model_outcome", P.MODEL_QOS, True,
                               "Outcome of the latest update, retained."),
        "sendProbe": op("send", "probe", "probe", P.SENSOR_QOS, False,
                        "A probe to itself, every min(15, keepalive/2) s."),
        "receiveProbe": op("receive", "probe", "probe", P.SENSOR_QOS, False,
                           "The probe back: readings reach the daemon."),
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "edge-aae gateway daemon",
            "version": __version__,
            "description": ("MQTT contract of `edge-aae serve`: readings in; scores, alerts, status and errors "
                            "out. Operations are from the daemon's side. Payload schemas are the JSON Schemas "
                            "shipped in `edge_aae/core/schemas/` (this file is generated from them by "
                            "`python -m edge_aae.core.asyncapi`). Scores: higher is more anomalous."),
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": {
                "host": "localhost:1883", "protocol": "mqtt", "protocolVersion": "5",
                "description": "Any MQTT 5 broker (mosquitto in tests). mqtts on 8883 with TLS.",
                "bindings": {"mqtt": {
                    "clientId": "edge-aae-{gateway}-{random}", "cleanSession": False, "keepAlive": 30,
                    "sessionExpiryInterval": 86400, "bindingVersion": BINDING,
                    "lastWill": {"topic": Topics("{root}", "{gateway}").status, "qos": P.STATUS_QOS, "retain": True,
                                 "message": '{"state": "offline", "gateway": "{gateway}", "ts": <unix seconds>}'},
                }},
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": components_messages},
    }


def render_yaml() -> str:
    """The document as YAML text (keys in insertion order)."""
    import yaml

    header = ("# Generated by `python -m edge_aae.core.asyncapi > docs/asyncapi.yaml`; "
              "edit edge_aae/core/schemas/ instead.\n")
    return header + yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=110)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
