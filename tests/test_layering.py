"""The package's layers, read from the source: protocols meet only in the hub.

Every ``import`` under ``gateway/`` counts, wherever it stands (module level, inside a
function, under ``if TYPE_CHECKING``): a deferred or type-only import is still a
dependency, and the easiest way for one to creep back. The rules (the project guide's
"protocols never import each other"; "the hub knows no wire format and reads no
config"):

- ``gateway.hub`` imports neither the service layer (config, service, listeners, TLS,
  security files) nor any protocol package;
- a protocol package (``gateway.mqtt``, ``gateway.mqttsn``, ``gateway.coap``) imports no
  other protocol package, nor the service layer that starts it (``gateway.listeners``,
  ``gateway.service``);
- ``gateway.dtls``, which the CoAP and MQTT-SN transports share, imports neither a
  protocol package nor the service layer (its SSL context comes from outside);
- the modules of ``gateway.mqttsn``, and those of ``gateway.config``, import one another
  without a loop;
- the command-line clients (``gateway.clients``) are clients of any broker: of the
  gateway they use the MQTT wire format (codec, packets, reasons) and nothing else;
- the bridges (``gateway.bridge``) are hub clients that speak MQTT to a remote broker:
  they use the hub, MQTT's wire format and its tables to the hub's values (codes), the
  client side of TLS and their config section, and no channel or transport of any
  protocol; neither the hub nor any protocol imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"
PROTOCOLS = ("mqtt", "mqttsn", "coap")
SERVICE_LAYER = ("gateway.config", "gateway.service", "gateway.listeners", "gateway.tls",
                 "gateway.security")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str) -> set[str]:
    """Every module of the gateway package that ``module`` imports, anywhere in it."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from gateway import netaddr`` imports the module gateway.netaddr.
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {name for name in found if name == "gateway" or name.startswith("gateway.")}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def protocol_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PROTOCOLS else None


def test_every_module_is_read() -> None:
    assert "gateway.hub.hub" in MODULES and "gateway.mqttsn.channel" in MODULES
    assert "gateway.listeners" in imports_of("gateway.service")
    # A function-level import counts (gateway.listeners starts MQTT-SN lazily).
    assert "gateway.mqttsn.udp" in imports_of("gateway.listeners")


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "gateway.hub")])
def test_the_hub_imports_no_protocol_and_no_service_layer(module: str) -> None:
    bad = sorted(name for name in imports_of(module)
                 if protocol_of(name) or any(within(name, s) for s in SERVICE_LAYER))
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", [m for m in MODULES if protocol_of(m)])
def test_a_protocol_imports_no_other_protocol_and_not_its_starter(module: str) -> None:
    own = protocol_of(module)
    bad = sorted(name for name in imports_of(module)
                 if protocol_of(name) not in (None, own)
                 or within(name, "gateway.listeners") or within(name, "gateway.service"))
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "gateway.dtls")])
def test_dtls_imports_no_protocol_and_no_service_layer(module: str) -> None:
    bad = sorted(name for name in imports_of(module)
                 if protocol_of(name) or any(within(name, s) for s in SERVICE_LAYER))
    assert bad == [], f"{module} imports {bad}"


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The loops of an import graph, each one as a path back to where it starts."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                found.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)
    return found


def test_loops_are_found() -> None:
    assert cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c", "a"]]
    assert cycles({"a": ["b", "c"], "b": ["c"], "c": []}) == []


@pytest.mark.parametrize("package", ["gateway.mqttsn", "gateway.config"])
def test_the_modules_of_a_package_import_one_another_without_a_loop(package: str) -> None:
    modules = [m for m in MODULES if within(m, package)]
    assert len(modules) > 5
    graph = {m: sorted(n for n in imports_of(m) if n in modules and n != m) for m in modules}
    assert cycles(graph) == []


CLIENTS_MAY_USE = ("gateway.clients", "gateway.mqtt.codec", "gateway.mqtt.packets",
                   "gateway.mqtt.reasons")


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "gateway.clients")])
def test_the_clients_use_only_the_mqtt_wire_format(module: str) -> None:
    bad = sorted(name for name in imports_of(module)
                 if name != "gateway" and not any(within(name, a) for a in CLIENTS_MAY_USE))
    assert bad == [], f"{module} imports {bad}"


BRIDGE_MAY_USE = ("gateway.bridge", "gateway.hub", "gateway.mqtt.codec", "gateway.mqtt.encoder",
                  "gateway.mqtt.packets", "gateway.mqtt.reasons", "gateway.mqtt.codes",
                  "gateway.config.bridges", "gateway.tls", "gateway.logtext", "gateway.errors")


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "gateway.bridge")])
def test_the_bridge_is_a_hub_client_on_the_mqtt_wire_format(module: str) -> None:
    bad = sorted(name for name in imports_of(module)
                 if name != "gateway" and not any(within(name, a) for a in BRIDGE_MAY_USE))
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", [m for m in MODULES if within(m, "gateway.hub") or protocol_of(m)])
def test_nothing_below_the_service_layer_imports_the_bridge(module: str) -> None:
    bad = sorted(name for name in imports_of(module) if within(name, "gateway.bridge"))
    assert bad == [], f"{module} imports {bad}"
