"""paho's MQTT client module, imported with ``urllib.request`` deferred (:mod:`edge_aae.gateway.lazy_urllib`).

Import ``mqtt`` from here, never ``paho.mqtt.client`` directly, in the gateway runtime.
"""

from edge_aae.gateway.lazy_urllib import defer_urllib_request

defer_urllib_request()

import paho.mqtt.client as mqtt  # noqa: E402  # after the placeholder is in place

__all__ = ["mqtt"]
