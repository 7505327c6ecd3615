"""Bridges between the gateway and a real Mosquitto started by the test: topics in, out
and both with prefixes and without loops, the remote's restarts and flapping without
losing a QoS 1 message, failover between addresses, MQTT 5, TLS host name checks."""

from __future__ import annotations

import signal
import threading


from tests.e2e.clients import PahoClient, unique


def bridge(port: int, *lines: str, name: str = "cloud", clientid: str = "gw-a") -> list[str]:
    """A connection section to 127.0.0.1:``port``, retried every second."""
    return [f"connection {name}", f"address 127.0.0.1:{port}", f"remote_clientid {clientid}",
            "restart_timeout 1", *lines]


def connected(gw, name: str = "cloud", start: int = 0, port: int | None = None) -> int:
    where = f" to 127.0.0.1:{port}" if port else " to "
    return gw.wait_for_log(f"bridge {name} connected{where}", start)


def collect(client: PahoClient, until: str) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in client.wait_for(until)]


def test_in_out_both_with_prefixes_and_no_loop(gateway, mosquitto, paho):
    broker = mosquitto()
    remote = paho(broker.port, unique("remote"))
    remote.connect()
    remote.subscribe("site-a/#", 1)
    remote.subscribe("chat/#", 1)
    remote.subscribe("$SYS/broker/connection/gw-a/state", 1)
    gw = gateway(*bridge(broker.port, 'topic sensors/# out 1 "" site-a/',
                         "topic cmd/# in 1 site-a/ cloud/site-a/", "topic chat/# both 1"))
    connected(gw)
    local = paho(gw.port, unique("local"))
    local.connect()
    local.subscribe("site-a/cmd/#", 1)
    local.subscribe("chat/#", 1)
    assert remote.next_message().payload == b"1"          # the bridge's state, retained
    local.publish("sensors/t", b"21.5", 1)
    assert collect(remote, "site-a/sensors/t") == [("site-a/sensors/t", b"21.5")]
    broker.wait_for_log("gw-a 1 cloud/site-a/cmd/#")
    broker.wait_for_log("gw-a 1 chat/#")
    remote.publish("cloud/site-a/cmd/open", b"now", 1)
    assert collect(local, "site-a/cmd/open") == [("site-a/cmd/open", b"now")]
    # both: one copy each way. An echo would come back over the bridge before the
    # message that follows, which each side waits for.
    remote.publish("chat/1", b"from the cloud", 1)
    assert collect(local, "chat/1") == [("chat/1", b"from the cloud")]
    local.publish("chat/2", b"from the site", 1)
    assert collect(remote, "chat/2") == [("chat/1", b"from the cloud"), ("chat/2", b"from the site")]
    remote.publish("chat/3", b"again", 1)
    assert collect(local, "chat/3") == [("chat/2", b"from the site"), ("chat/3", b"again")]
    # SIGTERM: the remote hears state 0, then a DISCONNECT.
    assert gw.stop() == 0
    assert collect(remote, "$SYS/broker/connection/gw-a/state")[-1][1] == b"0"
    broker.wait_for_log("Received DISCONNECT from gw-a")


def test_messages_wait_while_the_remote_restarts(gateway, mosquitto, paho):
    broker = mosquitto()
    reader = paho(broker.port, "reader", clean_session=False)
    reader.connect()
    reader.subscribe("data/#", 1)
    reader.close()                     # away: Mosquitto queues for its session
    gw = gateway(*bridge(broker.port, "topic data/# out 1"))
    mark = connected(gw)
    local = paho(gw.port, unique("pub"))
    local.connect()
    local.publish("data/0", b"0", 1)
    broker.stop()
    for n in range(1, 21):             # the gateway takes them while the remote is down
        local.publish(f"data/{n}", str(n).encode(), 1)
    broker.start()
    connected(gw, start=mark)
    local.publish("data/end", b"end", 1)
    reader = paho(broker.port, "reader", clean_session=False)
    reader.connect()
    got = [m.payload for m in reader.wait_for("data/end")]
    assert set(got) == {str(n).encode() for n in range(21)} | {b"end"}


def test_a_flapping_remote_loses_no_qos1_message(gateway, mosquitto, paho):
    """Mosquitto stopped and started five times while QoS 1 messages flow; every one
    arrives (a resent one may arrive twice, as QoS 1 allows)."""
    broker = mosquitto()
    reader = paho(broker.port, "reader", clean_session=False)
    reader.connect()
    reader.subscribe("flow/#", 1)
    reader.close()
    gw = gateway(*bridge(broker.port, "topic flow/# out 1"), "max_queued_messages 0")
    mark = connected(gw)
    local = paho(gw.port, unique("pub"))
    local.connect()
    sent: list[int] = []
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set():
            local.publish(f"flow/{n}", str(n).encode(), 1)
            sent.append(n)
            n += 1
            stop.wait(0.002)

    worker = threading.Thread(target=publish)
    worker.start()
    try:
        for _ in range(5):
            broker.stop(signal.SIGTERM if _ % 2 else signal.SIGINT)
            broker.start()
            mark = connected(gw, start=mark)
    finally:
        stop.set()
        worker.join()
    local.publish("flow/end", b"end", 1)
    reader = paho(broker.port, "reader", clean_session=False)
    reader.connect()
    got = {m.payload for m in reader.wait_for("flow/end", timeout=30)}
    missing = [n for n in sent if str(n).encode() not in got]
    assert len(sent) > 50 and missing == []


def test_failover_to_the_second_address_and_back(gateway, mosquitto, paho):
    first, second = mosquitto(), mosquitto()
    readers = []
    for broker in (first, second):
        reader = paho(broker.port, unique("reader"))
        reader.connect()
        reader.subscribe("f/#", 1)
        readers.append(reader)
    gw = gateway("connection cloud", f"address 127.0.0.1:{first.port} 127.0.0.1:{second.port}",
                 "remote_clientid gw-a", "restart_timeout 1", "topic f/# out 1")
    mark = connected(gw, port=first.port)
    local = paho(gw.port, unique("pub"))
    local.connect()
    local.publish("f/1", b"first", 1)
    assert collect(readers[0], "f/1") == [("f/1", b"first")]
    first.stop()
    mark = connected(gw, start=mark, port=second.port)
    local.publish("f/2", b"second", 1)
    assert collect(readers[1], "f/2") == [("f/2", b"second")]
    first.start()                      # round_robin false: back to the first address
    connected(gw, start=mark, port=first.port)
    reader = paho(first.port, unique("reader"))
    reader.connect()
    reader.subscribe("f/#", 1)
    local.publish("f/3", b"first again", 1)
    assert collect(reader, "f/3") == [("f/3", b"first again")]
    second.wait_for_log("Received DISCONNECT from gw-a")   # it left the second one cleanly


def test_mqtt5_bridge_with_no_local_and_properties(gateway, mosquitto, paho):
    broker = mosquitto()
    remote = paho(broker.port, unique("remote"), protocol=5)
    remote.connect()
    remote.subscribe("v5/#", 1)
    gw = gateway(*bridge(broker.port, "bridge_protocol_version mqttv50", "topic v5/# both 1",
                         "bridge_session_expiry_interval 60"))
    connected(gw)
    broker.wait_for_log("as gw-a (p5, c0, k60)")
    local = paho(gw.port, unique("local"), protocol=5)
    local.connect()
    local.subscribe("v5/#", 1)
    broker.wait_for_log("gw-a 1 v5/#")
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("site", "a")]
    props.ContentType = "text/plain"
    info = local.client.publish("v5/1", b"one", 1, properties=props)
    info.wait_for_publish(10)
    (message,) = remote.wait_for("v5/1")
    assert (message.properties.UserProperty, message.properties.ContentType) == ([("site", "a")], "text/plain")
    # No Local: what the bridge published is not sent back to it.
    assert collect(local, "v5/1") == [("v5/1", b"one")]
    remote.publish("v5/2", b"two", 1)
    assert collect(local, "v5/2") == [("v5/2", b"two")]
    local.publish("v5/3", b"three", 1)
    assert collect(remote, "v5/3") == [("v5/2", b"two"), ("v5/3", b"three")]


def test_tls_bridge_checks_the_host_name(gateway, mosquitto, paho, tmp_path):
    from tests.security.pki import make_pki

    pki = make_pki(tmp_path)
    broker = mosquitto([f"certfile {pki['server']}\nkeyfile {pki['server_key']}",
                        f"certfile {pki['elsewhere']}\nkeyfile {pki['elsewhere_key']}",
                        ""])
    right, wrong, plain = broker.ports
    reader = paho(plain, unique("reader"))
    reader.connect()
    reader.subscribe("$SYS/broker/connection/+/state", 1)
    tls = [f"bridge_cafile {pki['ca']}", "topic t/# out 1"]
    gw = gateway(*bridge(right, *tls, name="right", clientid="right"),
                 *bridge(wrong, *tls, name="wrong", clientid="wrong"),
                 *bridge(wrong, *tls, "bridge_insecure true", name="insecure", clientid="insecure"))
    connected(gw, "right")
    connected(gw, "insecure")
    gw.wait_for_log(f"bridge wrong: connection to 127.0.0.1:{wrong} failed:")
    up: set[str] = set()
    while not up >= {"right", "insecure"}:
        up.add(reader.next_message().topic.split("/")[3])
    assert "wrong" not in up
    gw.wait_for_log("IPAddressMismatch")
    assert " as wrong " not in broker.log_text()       # no CONNECT (nor password) sent


def test_mosquitto_bridged_into_the_gateway_is_recognised(gateway, mosquitto, paho):
    """The other way round: Mosquitto's own bridge, try_private on (its default), into
    the gateway. The gateway takes the bridge flag and gives its subscriptions No Local,
    so a ``both`` topic does not echo."""
    gw = gateway()
    broker = mosquitto(settings="\n".join([
        "connection gw", f"address 127.0.0.1:{gw.port}", "remote_clientid mosq-bridge",
        "restart_timeout 1", "topic chat/# both 1"]))
    broker.wait_for_log("Received SUBACK from local.mosq-bridge")  # connected, subscribed
    on_gw, on_mosq = paho(gw.port, unique("on-gw")), paho(broker.port, unique("on-mosq"))
    for client in (on_gw, on_mosq):
        client.connect()
        client.subscribe("chat/#", 1)
    on_mosq.publish("chat/1", b"from mosquitto", 1)
    assert collect(on_gw, "chat/1") == [("chat/1", b"from mosquitto")]
    on_gw.publish("chat/2", b"from the gateway", 1)
    assert collect(on_mosq, "chat/2") == [("chat/1", b"from mosquitto"), ("chat/2", b"from the gateway")]
    assert "unacceptable protocol version" not in broker.log_text()
