"""twistd plugin: ``twistd -n mqttgateway``.

twistd imports plugins while parsing options, before any reactor exists, so this is
where the asyncio reactor gets installed (guarded) for aiocoap to share. The real code
is imported lazily by ``gateway.service``.
"""

from twisted.application.service import ServiceMaker

from gateway.reactor import install_asyncio_reactor

install_asyncio_reactor()

mqttgateway = ServiceMaker(
    "mqttgateway",
    "gateway.service",
    "MQTT, MQTT-SN and CoAP gateway around one pub/sub hub",
    "mqttgateway",
)
