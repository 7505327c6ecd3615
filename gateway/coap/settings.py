"""The part of the configuration a CoAP listener reads; updated in place on reload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Largest request body assembled from Block1 transfers when message_size_limit is 0,
#: so a client cannot make the gateway buffer without bound.
DEFAULT_BODY_LIMIT = 1 << 20


@dataclass(slots=True)
class CoAPSettings:
    max_requests_per_second: int = 1000
    max_requests_per_address: int = 5000
    deduplication_entries: int = 50000
    connection_required: bool = False
    heartbeat: int = 30
    publish_qos: str = "coap"
    subscribe_qos: str = "coap"
    notify_type: str = "qos"
    message_size_limit: int = 0
    max_clients: int = -1  # the listener's max_connections: observers + connections

    @property
    def body_limit(self) -> int:
        return self.message_size_limit or DEFAULT_BODY_LIMIT


def settings_from(config: Any, listener: Any = None) -> CoAPSettings:
    """Build the settings from a ``gateway.config.Config`` (and the listener)."""
    return CoAPSettings(
        max_requests_per_second=config.coap_max_requests_per_second,
        max_requests_per_address=config.coap_max_requests_per_address,
        deduplication_entries=config.coap_deduplication_entries,
        connection_required=config.coap_connection_required,
        heartbeat=config.coap_heartbeat,
        publish_qos=config.coap_publish_qos,
        subscribe_qos=config.coap_subscribe_qos,
        notify_type=config.coap_notify_type,
        message_size_limit=config.message_size_limit,
        max_clients=listener.max_connections if listener is not None else -1,
    )


def qos_for(choice: str, confirmable: bool) -> int:
    """EMQX's ``publish_qos``/``subscribe_qos``: ``coap`` means CON 1, NON 0."""
    if choice == "coap":
        return 1 if confirmable else 0
    return int(choice[3])
