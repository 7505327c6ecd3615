"""DTLS 1.2 for the UDP transports (CoAP, MQTT-SN), on pyOpenSSL's memory BIOs.

Neutral: no protocol, no configuration file. ``server`` is the sans-IO core (one
``DTLSServer`` per listener: datagrams in; datagrams, plaintext and events out; a
timer), ``cookies`` the stateless HelloVerifyRequest and the context setup it needs,
``records`` the record framing read without OpenSSL, ``stats`` the ``$SYS/broker/dtls/``
counters, and ``driver`` runs a server on a Twisted reactor for a transport that
supplies a ``sendto``. The SSL context itself (certificates, PSK, client
certificates) comes from ``gateway.tls``.
"""
