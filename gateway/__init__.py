"""mqttgateway: MQTT, MQTT-SN and CoAP around one in-process pub/sub hub."""

__version__ = "0.1.0"
