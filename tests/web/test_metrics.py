"""``/metrics`` scraped with prometheus_client's parser while real clients run: paho-mqtt,
mqtt-sn-12's CLIs and aiocoap on one gateway; then a serial line played by the test."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from aiocoap.numbers.codes import GET, PUT

from tests.conftest import REPO, free_port, free_udp_port
from tests.e2e.clients import unique
from tests.mqttsn import wire as w
from tests.mqttsn.radio import Coordinator, api_frame, receive_packet
from tests.web.helpers import get, scrape, value, wait_until

BIN = Path(sys.executable).parent
RADIO = 0x0013A20040A1B2C3


def sn_cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / name), *args, "--timeout", "10"], cwd=REPO, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (name, args, done.stdout, done.stderr)
    return done


def three_protocols(gateway, *lines: str):
    sn_port, coap_port, http_port = free_udp_port(), free_udp_port(), free_port()
    gw = gateway(f"listener {sn_port} 127.0.0.1", "protocol mqttsn",
                 "mqttsn_predefined_topic 10 plant/sn/predef",
                 f"listener {coap_port} 127.0.0.1", "protocol coap",
                 f"listener {http_port}", "protocol http_api", "listener_allow_anonymous true",
                 *lines)
    gw.sn_port, gw.coap_port, gw.http_port = sn_port, coap_port, http_port
    return gw


def test_figures_move_with_mqtt_mqttsn_and_coap_traffic(gateway, paho, aio) -> None:
    gw = three_protocols(gateway, "max_queued_messages 1")
    http, tcp, udp_sn, udp_coap = gw.http_port, f"tcp:{gw.port}", f"udp:{gw.sn_port}", f"udp:{gw.coap_port}"
    before = scrape(http)
    assert value(before, "mqttgateway_info", version=get(http, "/api/v1/version").body.decode()) == 1

    watcher = paho(gw.port, unique("watcher"))
    watcher.connect()
    watcher.subscribe("plant/#", 2)
    sub = subprocess.Popen([str(BIN / "mqtt_sn_sub"), "-p", str(gw.sn_port), "-i", "sn-listener",
                            "-t", "plant/cmd", "-q", "1", "-k", "60"], cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    topic = unique("plant/coap/")
    obs = aio.observe(f"coap://127.0.0.1:{gw.coap_port}/ps/{topic}?clientid=observer")
    try:
        live = wait_until(lambda: (s := scrape(http)) and value(
            s, "mqttgateway_clients_connected", protocol="mqttsn", transport=udp_sn) == 1 and s,
            "mqtt_sn_sub connected")
        assert value(live, "mqttgateway_clients_connected", protocol="mqtt", transport=tcp) == 1
        assert value(live, "mqttgateway_clients_connected", protocol="coap", transport=udp_coap) == 1
        assert value(live, "mqttgateway_coap_observations") == 1

        for qos in (0, 1, 2):
            watcher.publish("plant/mqtt", b"m", qos)
        sn_cli("mqtt_sn_pub", "-p", str(gw.sn_port), "-t", "plant/sn", "-m", "s0")
        sn_cli("mqtt_sn_pub", "-p", str(gw.sn_port), "-t", "plant/sn", "-m", "s1", "-q", "1")
        sn_cli("mqtt_sn_pub", "-p", str(gw.sn_port), "-T", "10", "-m", "s-1", "-q", "-1")
        assert aio.request(PUT, f"coap://127.0.0.1:{gw.coap_port}/ps/plant/coap", b"c1").code.is_successful()
        got = [watcher.next_message().payload for _ in range(7)]
        assert sorted(got) == sorted([b"m", b"m", b"m", b"s0", b"s1", b"s-1", b"c1"])
        watcher.publish(topic, b"to the observer", 1)
        assert obs.next().payload == b"to the observer"
        watcher.publish("plant/cmd", b"to the sensor", 1)
        watcher.next_message()   # its own two messages (plant/# matches them too)
        watcher.next_message()
        after = wait_until(lambda: (s := scrape(http)) and value(
            s, "mqttgateway_messages_sent_total", protocol="mqttsn", qos="1") == 1 and s,
            "the MQTT-SN delivery counted")
    finally:
        sub.send_signal(signal.SIGTERM)
        sub.wait(10)
    obs.cancel()
    aio.request(GET, f"coap://127.0.0.1:{gw.coap_port}/ps/{topic}?clientid=observer", observe=1)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    received = "mqttgateway_messages_received_total"
    assert [delta(received, protocol="mqtt", qos=q) for q in ("0", "1", "2")] == [1, 3, 1]
    assert [delta(received, protocol="mqttsn", qos=q) for q in ("0", "1", "2", "-1")] == [1, 1, 0, 1]
    assert [delta(received, protocol="coap", qos=q) for q in ("0", "1", "2")] == [0, 1, 0]
    sent = "mqttgateway_messages_sent_total"
    # to the watcher (subscribed at QoS 2): each message at its own QoS, QoS -1 as 0;
    # then its own two at QoS 1; to the observer and the MQTT-SN sensor one each at QoS 1
    assert [delta(sent, protocol="mqtt", qos=q) for q in ("0", "1", "2")] == [3, 5, 1]
    assert delta(sent, protocol="coap", qos="1") == 1
    assert delta(sent, protocol="mqttsn", qos="1") == 1
    assert delta("mqttgateway_bytes_received_total") > 0 and delta("mqttgateway_bytes_sent_total") > 0
    assert delta("mqttgateway_packets_received_total") > 7

    # queued for an absent client, then dropped when its queue (max 1) is full
    away = paho(gw.port, unique("away"), clean_session=False)
    away.connect()
    away.subscribe("plant/queue", 1)
    away.disconnect()
    watcher.publish("plant/queue", b"kept", 1)
    watcher.publish("plant/queue", b"dropped", 1)
    watcher.publish("plant/retained", b"r", 0, retain=True)
    final = wait_until(lambda: (s := scrape(http)) and value(
        s, "mqttgateway_coap_observations") == 0 and s, "the observation ended")
    assert value(final, "mqttgateway_sessions_offline", protocol="mqtt") == 1
    assert value(final, "mqttgateway_queued_messages", protocol="mqtt") == 1
    assert value(final, "mqttgateway_messages_dropped_total", protocol="mqtt", qos="1") == 1
    assert value(final, "mqttgateway_retained_messages") == value(after, "mqttgateway_retained_messages") + 1
    assert value(final, "mqttgateway_clients_connected", protocol="coap", transport=udp_coap) == 0
    assert value(final, "mqttgateway_coap_observations") == 0


def test_connection_rate_refusals_are_counted(gateway, paho) -> None:
    http = free_port()
    gw = gateway("max_connection_rate 1/600", f"listener {http}", "protocol http_api",
                 "listener_allow_anonymous true", listener=True, wait=False)
    gw.wait_for_log(f"listening for http_api on 127.0.0.1:{http}\n")
    first = paho(gw.port, unique("first"))
    first.connect()
    second = paho(gw.port, unique("second"))
    try:
        second.connect(timeout=3)
    except Exception:
        pass
    assert wait_until(lambda: value(scrape(http), "mqttgateway_rate_limited_total",
                                    protocol="mqtt", limit="connection_rate") >= 1, "a refusal counted")


def test_serial_line_state_radios_and_bad_checksums(gateway, paho, pty_pair) -> None:
    master, device = pty_pair
    http = free_port()
    gw = gateway(f"mqttsn_serial {device} 38400 xbee2", f"listener {http}", "protocol http_api",
                 "listener_allow_anonymous true")
    gw.wait_for_log(f"MQTT-SN serial line {device} open")
    xb = Coordinator(master, mode=2)
    bad = bytearray(api_frame(receive_packet(RADIO, 0x1234, w.connect("x")), 2))
    bad[-1] ^= 0xFF
    xb.send_raw(bytes(bad))
    xb.send(RADIO, 0x1234, w.connect("radio-1", 30))
    xb.expect(lambda tx: tx.addr64 == RADIO and tx.payload == w.connack())
    samples = scrape(http)
    assert value(samples, "mqttgateway_serial_port_up", device=device, framing="xbee2") == 1
    assert value(samples, "mqttgateway_serial_port_opens_total", device=device) == 1
    assert value(samples, "mqttgateway_serial_frames_dropped_total", device=device, reason="bad_checksum") == 1
    assert value(samples, "mqttgateway_clients_connected", protocol="mqttsn", transport=f"serial:{device}") == 1
    [line] = get(http, "/api/status").json()["serial"]
    assert (line["device"], line["framing"], line["up"]) == (device, "xbee2", True)
    assert [(r["address"], r["address16"], r["client_id"]) for r in line["radios"]] == [
        (f"{RADIO:016x}", "1234", "radio-1")]
