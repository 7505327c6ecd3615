"""Command-line MQTT clients with Mosquitto's flags, output and exit codes.

``mqttgateway-pub``, ``mqttgateway-sub`` and ``mqttgateway-rr`` behave as
``mosquitto_pub``, ``mosquitto_sub`` and ``mosquitto_rr`` 2.0 do, so field
engineers keep their habits and scripts, but speak MQTT through the project's
own sans-IO codec (``gateway.mqtt.codec``) over a non-blocking socket loop.

``options`` reads the command line (``checks`` holds Mosquitto's value checks),
``session`` is the MQTT client (connection, TLS, QoS flows, keepalive, ``-d``
lines as libmosquitto words them, ``texts`` its error numbers and messages),
``output`` prints received messages (``-v``, ``-N``, ``-F``, JSON), ``usage``
the ``--help`` texts; ``pub``, ``sub`` and ``rr`` are the three programs, with
``common`` for what they share. Nothing here touches the hub or the service:
these are clients of any MQTT broker.
"""
