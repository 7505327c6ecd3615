"""Bridges: the gateway as an MQTT client of another broker, in Mosquitto's syntax.

A bridge joins this gateway's hub to a remote broker (a cloud cluster, another site)
for the topics its ``topic`` lines name. It is a hub client like any other
(``link``), so the hub stays protocol-neutral; towards the remote it speaks MQTT
3.1, 3.1.1 or 5 through the project's codec, with a sans-IO client state machine
(``client``) under a thin Twisted transport (``transport``). ``topics`` remaps topic
names, ``service`` runs every configured bridge.
"""
