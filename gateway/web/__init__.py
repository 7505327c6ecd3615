"""The HTTP side: Mosquitto 2.1's ``protocol http_api`` listener, Prometheus metrics and
a live status page, served by twisted.web in the gateway's own process.

``site`` builds the listener (routing, TLS, Basic authentication in ``access``);
``mosquitto`` answers Mosquitto's ``/api/v1/*`` endpoints; ``metrics`` is the Prometheus
collector; ``status`` the status page's JSON; ``files`` serves ``http_dir``. Everything
here reads what the hub exposes (sessions, ``hub.stats`` with its probes and status
sections) when a request asks for it, and imports no protocol package.
"""
