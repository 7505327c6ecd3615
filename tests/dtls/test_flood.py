"""A DTLS handshake flood must not lock out anyone else.

For FLOOD_SECONDS, from hundreds of source ports: ClientHellos without a cookie from
127.0.0.1, and clients on 127.0.0.3 that answer their HelloVerifyRequest and then go
silent (each holds a handshake until it times out), into a CoAP and an MQTT-SN DTLS
listener.
Meanwhile an MQTT client does QoS 1 round trips, and a well-behaved DTLS client on
another source address (127.0.0.2) completes a handshake and a CoAP request every
half second. They must all keep completing; the round trip times are printed, not
bounded here (bench/dtls_load.py measures them against a quiet gateway).
"""

from __future__ import annotations

import multiprocessing as mp
import time

from tests.coap.helpers import MQTTClient
from tests.coap.test_flood import RoundTrips
from tests.conftest import free_udp_port
from tests.dtls.client import DTLSClient, flood

FLOOD_SECONDS = 15.0
KEY = b"flood-test-key"


def test_a_handshake_flood_leaves_mqtt_and_other_dtls_clients_served(gateway, tmp_path) -> None:
    coap, sn = free_udp_port(), free_udp_port()
    (tmp_path / "psk").write_text(f"device:{KEY.hex()}\n")
    # A small handshake bound (a quarter of it per source address: 2) is reached by the
    # stalling clients even when the flood runs slowly on a busy machine.
    gw = gateway(f"psk_file {tmp_path / 'psk'}", "sys_interval 1", "dtls_max_handshakes 8",
                 f"listener {coap} 127.0.0.1", "protocol coap", "psk_hint gw",
                 f"listener {sn} 127.0.0.1", "protocol mqttsn", "psk_hint gw")
    rtt = RoundTrips(gw.port)
    rtt.once(1)
    generator = mp.get_context("fork").Process(target=flood, args=([coap, sn], FLOOD_SECONDS, 3),
                                               daemon=True)
    generator.start()
    latencies: list[float] = []
    handshakes = requests = 0
    next_client = time.monotonic()
    mid = 1
    try:
        while generator.is_alive():
            mid = mid % 65535 + 1
            latencies.append(rtt.once(mid))
            if time.monotonic() >= next_client:
                next_client += 0.5
                client = DTLSClient(coap, host="127.0.0.1", psk=("device", KEY), bind="127.0.0.2")
                client.handshake()
                handshakes += 1
                client.send(bytes([0x40, 0x01, mid >> 8, mid & 0xFF, 0xB1]) + b"x")  # GET /x
                assert client.recv()[1] == 0x84  # 4.04: through DTLS, CoAP answered
                requests += 1
                client.close()
            time.sleep(0.002)
    finally:
        generator.join(10)
        if generator.is_alive():
            generator.kill()
    assert gw.running(), gw.describe()
    sys_reader = MQTTClient(gw.port)
    sys_reader.subscribe("$SYS/broker/dtls/#", qos=0)
    counters: dict[str, int] = {}
    while len(counters) < 10:  # every counter, retained
        m = sys_reader.get()
        counters[m.topic.removeprefix("$SYS/broker/dtls/")] = int(m.payload)
    sys_reader.close()
    latencies.sort()
    print(f"{len(latencies)} MQTT round trips, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, max "
          f"{latencies[-1] * 1000:.1f} ms; {handshakes} handshakes by the good client; "
          f"$SYS dtls: {counters}")
    assert len(latencies) >= 100  # the MQTT round trips kept completing
    assert handshakes == requests >= FLOOD_SECONDS  # and the good client was never shut out
    assert counters["cookies/sent"] > handshakes  # the flood was answered, then limited
    assert counters["handshakes/rate limited"] > 0  # the spraying ports met the rate limit
    assert counters["handshakes/refused"] > 0  # and stalled handshakes hit their bound
    rtt.sock.close()
