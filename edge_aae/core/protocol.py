"""The MQTT protocol, in one place: every topic, its QoS and retain flag, and broker URLs.

The daemon, the alert subscriber, ``deploy`` and the AsyncAPI document all build
their topics here; payload schemas are :mod:`edge_aae.core.contract`, the update
wire format :mod:`edge_aae.core.update_format`.

With ROOT the topic root and GW the gateway id:
    in   ROOT/GW/sensors/ASSET            readings (JSON)
    out  ROOT/GW/anomaly/ASSET/score      QoS 0
    out  ROOT/GW/anomaly/ASSET/alert      QoS 1, through the durable outbox
    out  ROOT/GW/status                   retained; ``offline`` is also the last will
    out  ROOT/GW/errors                   QoS 0, rate-limited
    in   ROOT/GW/model/update             signed bundle header and chunks (when updates are enabled)
    both ROOT/GW/sensors/_probe           the daemon's probe to itself (health of the readings path)
    out  ROOT/GW/model                    retained outcome of the latest update
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from edge_aae.core.errors import UsageError

SCORE_QOS = 0
ALERT_QOS = 1
STATUS_QOS = 1
ERRORS_QOS = 0
SENSOR_QOS = 1
UPDATE_QOS = 1
MODEL_QOS = 1
FEEDBACK_QOS = 1
DRIFT_QOS = 1
PROBE_ASSET = "_probe"  # reserved: not an asset
ANY = "+"  # one topic level, any value (subscriptions only)
def parse_broker_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://HOST:PORT`` or ``mqtts://HOST:PORT`` -> ``(host, port, tls)``.

    Raises:
        UsageError: another scheme, no host, or a bad port (a command-line flag: exit status 2).

    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise UsageError(f"--broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise UsageError(f"--broker {url!r}: the port is not a number in 1..65535") from None
    if not parts.hostname:
        raise UsageError(f"--broker {url!r}: no host")
    return parts.hostname, port, tls




@dataclass(frozen=True)
class Topics:
    """Topic names for one gateway.

    ``Topics("{root}", "{gateway}").score("{asset}")`` gives the address templates the
    AsyncAPI document shows; ``Topics(root, ANY)`` the filters of a fleet-wide subscriber.
    """

    root: str
    gateway: str

    @classmethod
    def filters(cls, root: str, gateway: str = ANY) -> Topics:
        """Topics for subscribing across gateways: ``gateway`` may be :data:`ANY`."""
        return cls(root, gateway)

    @property
    def base(self) -> str:
        """``ROOT/GW``."""
        return f"{self.root}/{self.gateway}"

    @property
    def sensors_filter(self) -> str:
        """Subscription filter for every asset's readings."""
        return f"{self.base}/sensors/+"

    def sensors(self, asset: str) -> str:
        """Readings of one asset."""
        return f"{self.base}/sensors/{asset}"

    def score(self, asset: str) -> str:
        """Scores of one asset."""
        return f"{self.base}/anomaly/{asset}/score"

    def alert(self, asset: str) -> str:
        """Alerts of one asset."""
        return f"{self.base}/anomaly/{asset}/alert"

    @property
    def feedback(self) -> str:
        """Operator commands to the gateway: ack, mute, label, collect (QoS 1)."""
        return f"{self.base}/feedback"

    @property
    def feedback_state(self) -> str:
        """Retained: the gateway's mutes, counts and the outcome of recent commands."""
        return f"{self.base}/feedback/state"

    def feedback_collected(self, request_id: str) -> str:
        """Labelled alerts published in answer to one ``collect`` command."""
        return f"{self.base}/feedback/collected/{request_id}"

    def drift(self, asset: str) -> str:
        """Retained drift and health state of one asset's model."""
        return f"{self.base}/anomaly/{asset}/drift"

    @property
    def status(self) -> str:
        """The gateway's retained status."""
        return f"{self.base}/status"

    @property
    def model_update(self) -> str:
        """Signed bundles pushed by the model owner (chunked, QoS 1)."""
        return f"{self.base}/model/update"

    @property
    def model(self) -> str:
        """Retained outcome of the latest update."""
        return f"{self.base}/model"

    @property
    def errors(self) -> str:
        """Rejected inputs."""
        return f"{self.base}/errors"

    @property
    def probe(self) -> str:
        """The daemon's own probe, received back through the readings subscription."""
        return f"{self.base}/sensors/{PROBE_ASSET}"

    def asset_of(self, topic: str) -> str | None:
        """The ASSET of a readings topic, or None if ``topic`` is not one."""
        prefix = f"{self.base}/sensors/"
        if not topic.startswith(prefix):
            return None
        asset = topic[len(prefix):]
        return asset if asset and "/" not in asset else None


def unreachable(host: str, port: int) -> str:
    """Why a broker cannot be reached, in words: a host name DNS cannot resolve, or no answer."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"broker host {host!r} cannot be resolved (DNS: {exc.args[-1] if exc.args else exc}); check the name"
    except OSError as exc:
        return f"broker {host}:{port} not reachable ({exc})"
    return f"broker {host}:{port} not reachable (nothing answers there)"
