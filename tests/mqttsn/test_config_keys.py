"""The mqttsn_* configuration keys: values, defaults, and errors with file:line."""

from __future__ import annotations

import pytest

from gateway.config import parse
from gateway.errors import ConfigError
from gateway.mqttsn.settings import MQTTSNSettings


def test_defaults() -> None:
    cfg = parse("")
    settings = MQTTSNSettings.from_config(cfg)
    assert (settings.gateway_id, settings.advertise_interval, settings.max_sleep_buffer) == (1, 900, 100)
    assert settings.predefined == {} and settings.clients == {} and settings.default_username is None
    assert cfg.mqttsn_serial == []


def test_every_key() -> None:
    cfg = parse(
        "listener 1885 127.0.0.1\n"
        "protocol mqttsn\n"
        "mqttsn_multicast 225.1.1.1 1883\n"
        "mqttsn_gateway_id 200\n"
        "mqttsn_advertise_interval 0\n"
        "mqttsn_predefined_topic 1 sensors/with space\n"
        "mqttsn_predefined_topic 65534 a/b\n"
        "mqttsn_max_sleep_buffer 5\n"
        "mqttsn_serial /dev/ttyUSB0 38400 xbee2\n"
        "mqttsn_serial /dev/ttyS0 9600 plain\n"
        "mqttsn_client boiler heating\n"
        "mqttsn_client pump\n"
        "mqttsn_default_username sensor\n"
    )
    assert cfg.listeners[0].protocol == "mqttsn"
    assert cfg.listeners[0].mqttsn_multicast == ("225.1.1.1", 1883)
    assert cfg.mqttsn_predefined_topics == {1: "sensors/with space", 65534: "a/b"}
    assert cfg.mqttsn_serial == [("/dev/ttyUSB0", 38400, "xbee2"), ("/dev/ttyS0", 9600, "plain")]
    assert cfg.mqttsn_clients == {"boiler": "heating", "pump": "pump"}
    settings = MQTTSNSettings.from_config(cfg)
    assert (settings.gateway_id, settings.advertise_interval, settings.max_sleep_buffer) == (200, 0, 5)
    assert settings.default_username == "sensor"


@pytest.mark.parametrize(
    "text, error",
    [
        ("mqttsn_gateway_id 256", "1: mqttsn_gateway_id: 256 is out of range (0..255)"),
        ("mqttsn_predefined_topic 0 a", "1: mqttsn_predefined_topic: 0 is out of range (1..65534)"),
        ("mqttsn_predefined_topic 65535 a", "out of range"),
        ("mqttsn_predefined_topic 3", "expected a topic id and a topic name"),
        ("mqttsn_predefined_topic 3 a/#", "not a filter"),
        ("mqttsn_predefined_topic 3 a\nmqttsn_predefined_topic 3 b",
         "2: mqttsn_predefined_topic: topic id 3 is already predefined as 'a'"),
        ("mqttsn_serial /dev/ttyS0 9600", "expected DEVICE BAUD FRAMING"),
        ("mqttsn_serial /dev/ttyS0 fast plain", "expected an integer"),
        ("mqttsn_serial /dev/ttyS0 9600 xbee3", "framing must be plain, xbee1 or xbee2"),
        ("mqttsn_serial /dev/ttyS0 9600 plain\nmqttsn_serial /dev/ttyS0 38400 xbee1",
         "2: mqttsn_serial: serial device '/dev/ttyS0' is already configured"),
        ("mqttsn_client", "expected CLIENT_ID [USERNAME]"),
        ("mqttsn_client a b c", "expected CLIENT_ID [USERNAME]"),
        ("mqttsn_client a\nmqttsn_client a b", "2: mqttsn_client: client id 'a' is already listed"),
        ("mqttsn_default_username a\nmqttsn_default_username b", "duplicate value"),
        ("mqttsn_default_username a b", "too many values"),
        ("mqttsn_max_sleep_buffer -1", "out of range"),
        ("mqttsn_advertise_interval 70000", "out of range"),
        ("listener 1885\nprotocol mqttsn\nmqttsn_multicast 10.0.0.1 1883", "not an IPv4 multicast group"),
        ("listener 1885\nprotocol mqttsn\nmqttsn_multicast ff02::1 1883", "not an IPv4 multicast group"),
        ("listener 1885\nprotocol mqttsn\nmqttsn_multicast 225.1.1.1", "expected GROUP PORT"),
        ("listener 1885\nmqttsn_multicast 225.1.1.1 1883",
         "2: mqttsn_multicast: only for a protocol mqttsn listener"),
        ("mqttsn_multicast 225.1.1.1 1883", "needs a listener"),
    ],
)
def test_errors(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(text, "t.conf")
    assert error in str(e.value)
    assert str(e.value).startswith("t.conf:")


def test_example_config_parses() -> None:
    from pathlib import Path

    from gateway.config import load

    cfg = load(str(Path(__file__).resolve().parents[2] / "etc" / "mqttsn.conf"))
    assert [x.protocol for x in cfg.listeners] == ["mqtt", "mqttsn"]
    assert cfg.listeners[1].mqttsn_multicast is None   # commented out: it listens everywhere
    assert cfg.mqttsn_predefined_topics[1] == "sensors/outdoor/temp"
