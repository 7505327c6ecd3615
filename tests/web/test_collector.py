"""The collector in-process: families from probes (a histogram such as a store's commit
latency would register), samples of several sources merged, OpenMetrics on request."""

from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import task

from gateway.hub.api import ClientInfo
from gateway.hub.hub import Hub
from gateway.web.metrics import Exposition


class Sink:
    def send_publish(self, *args: object) -> bool:
        return True

    def close(self, reason: object) -> None:
        pass


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_probes_become_families() -> None:
    hub = Hub(clock=task.Clock())
    hub.probe("store_commit_seconds", "histogram", "Time to commit a batch to the store", (),
              lambda: [((), ([(0.001, 3), (0.01, 5), (float("inf"), 6)], 0.042))])
    hub.probe("bridge_up", "gauge", "1 while the bridge is connected", ("bridge",),
              lambda: [(("north",), 1), (("south",), 0)])
    for source in ("a", "b"):  # two listeners feeding one family with the same labels
        hub.probe("rate_limited", "counter", "limits", ("protocol", "limit"),
                  lambda: [(("mqtt", "connection_rate"), 2)], source)
    body, content_type = Exposition(hub).render(None)
    found = families(body.decode())
    commit = {(s.name, s.labels.get("le")): s.value for s in found["mqttgateway_store_commit_seconds"].samples}
    assert commit[("mqttgateway_store_commit_seconds_bucket", "0.001")] == 3
    assert commit[("mqttgateway_store_commit_seconds_bucket", "+Inf")] == 6
    assert commit[("mqttgateway_store_commit_seconds_count", None)] == 6
    assert commit[("mqttgateway_store_commit_seconds_sum", None)] == 0.042
    assert {s.labels["bridge"]: s.value for s in found["mqttgateway_bridge_up"].samples} == {"north": 1, "south": 0}
    [limited] = found["mqttgateway_rate_limited"].samples
    assert limited.value == 4
    with pytest.raises(ValueError):
        hub.probe("bridge_up", "counter", "x", ("bridge",), lambda: [])


def test_clients_by_transport_and_openmetrics() -> None:
    hub = Hub(clock=task.Clock())
    serial = ClientInfo("radio-1", "mqttsn", "xbee:0013a200@/dev/ttyUSB0", transport="serial:/dev/ttyUSB0")
    hub.connect(serial, Sink(), True, 0)
    hub.connect(ClientInfo("internal"), Sink(), True, 0)
    body, content_type = Exposition(hub).render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    found = {f.name: f for f in parse_openmetrics(body.decode())}
    clients = {(s.labels["protocol"], s.labels["transport"]): s.value
               for s in found["mqttgateway_clients_connected"].samples}
    assert clients == {("mqttsn", "serial:/dev/ttyUSB0"): 1, ("mqtt", "internal"): 1}
