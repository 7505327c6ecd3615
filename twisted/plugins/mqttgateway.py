"""twistd plugin: ``twistd -n mqttgateway``.

Installs Twisted's asyncio reactor at import (guarded) so aiocoap can share the loop;
``twistd`` imports plugins while parsing options, before any reactor exists.
Everything heavy is imported lazily by ``gateway.service``.
"""

import sys

if "twisted.internet.reactor" not in sys.modules:
    from twisted.internet import asyncioreactor

    asyncioreactor.install()

from twisted.application.service import ServiceMaker

mqttgateway = ServiceMaker(
    "mqttgateway",
    "gateway.service",
    "MQTT, MQTT-SN and CoAP gateway around one pub/sub hub",
    "mqttgateway",
)
