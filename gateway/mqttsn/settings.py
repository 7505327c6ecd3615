"""The MQTT-SN part of the configuration, as the channels and transports read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config


@dataclass(slots=True)
class MQTTSNSettings:
    """Values from the ``mqttsn_*`` keys (and the few global ones MQTT-SN obeys)."""

    gateway_id: int = 1
    advertise_interval: int = 900  # seconds; 0: never
    predefined: dict[int, str] = field(default_factory=dict)
    max_sleep_buffer: int = 100  # QoS 0 messages held for one sleeping client
    default_username: str | None = None
    clients: dict[str, str] = field(default_factory=dict)  # client id -> username
    retry_interval: float = 10.0  # Tretry
    retry_count: int = 3  # Nretry
    max_topics: int = 1000  # normal topic ids per client
    handshake_timeout: float = 10.0  # CONNECT to CONNACK, will handshake included
    message_size_limit: int = 0
    verbose: bool = False

    @classmethod
    def from_config(cls, config: Config, verbose: bool = False) -> MQTTSNSettings:
        return cls(
            gateway_id=config.mqttsn_gateway_id,
            advertise_interval=config.mqttsn_advertise_interval,
            predefined=dict(config.mqttsn_predefined_topics),
            max_sleep_buffer=config.mqttsn_max_sleep_buffer,
            default_username=config.mqttsn_default_username,
            clients=dict(config.mqttsn_clients),
            message_size_limit=config.message_size_limit,
            verbose=verbose or "all" in config.log_type or "debug" in config.log_type,
        )
