"""The gateway as users start it: ``twistd -n mqttgateway -c FILE`` and ``mqttgateway -c FILE``.

Real subprocesses on ports picked at run time: start, serve, signals, reload,
command-line and configuration errors. ``tests/data/e2e/*.conf`` are config
templates (``str.format`` fields such as ``{port}``) whose third line is the one
under test.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from gateway.config import NOT_SUPPORTED
from tests import wire
from tests.conftest import (
    HOST,
    TWISTD,
    cli_command,
    config_text,
    free_port,
    run_briefly,
    twistd_command,
)
from tests.e2e.clients import RawClient, mosquitto_pub, unique

DATA = Path(__file__).resolve().parent.parent / "data" / "e2e"

COMMANDS = pytest.mark.parametrize("twistd", [False, True], ids=["mqttgateway", "twistd"])


def render(template: str, target: Path, **fields: object) -> Path:
    target.write_text((DATA / template).read_text(encoding="utf-8").format(**fields), encoding="utf-8")
    return target


def command(twistd: bool, *args: str) -> list[str]:
    return twistd_command(*args) if twistd else cli_command(*args)


def default_sigint() -> None:
    """In the child: SIGINT back to its default, in case this run inherited SIG_IGN
    (a test run started in the background does); Python then turns it into
    KeyboardInterrupt and Twisted into a shutdown."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def inflight_window(port: int, messages: int = 10) -> int:
    """How many unacknowledged QoS 1 messages the gateway sends one subscriber.

    The publisher waits for each PUBACK, so every delivery has been written by the
    time the subscriber's PINGREQ is answered: the PUBLISH packets before the
    PINGRESP are all the gateway will send until something is acknowledged.
    """
    topic = unique("e2e/window")
    with RawClient(port) as sub, RawClient(port) as pub:
        assert sub.connect(unique("window-sub")) == (False, 0)
        sub.send(wire.subscribe(1, [(topic, 1)]))
        sub.expect(wire.suback(1, [1]))
        assert pub.connect(unique("window-pub")) == (False, 0)
        for mid in range(1, messages + 1):
            pub.send(wire.publish(topic, b"m%d" % mid, qos=1, mid=mid))
            pub.expect(wire.puback(mid))
        sub.send(wire.pingreq())
        count = 0
        while True:
            first, _ = sub.read_packet()
            if first == 0xD0:
                return count
            assert first & 0xF0 == 0x30, f"unexpected packet {first:#04x}"
            count += 1


# --- serving ----------------------------------------------------------------------


def test_twistd_pub_sub_round_trip(gateway, mosquitto_sub):
    gw = gateway(twistd=True)
    topic = unique("e2e/twistd")
    sub = mosquitto_sub(gw.port, topic, qos=1)
    mosquitto_pub(gw.port, topic, "hello from mosquitto_pub", qos=1)
    msg = sub.next_message()
    assert (msg.topic, msg.payload, msg.qos) == (topic, "hello from mosquitto_pub", 1)


@COMMANDS
def test_connects_once_listening_is_logged(gateway, raw, twistd):
    gw = gateway(twistd=twistd, wait=False)
    gw.wait_for_log(f"listening for mqtt on {HOST}:{gw.port}")
    client = raw(gw.port)  # no retry loop: the port must accept now
    assert client.connect(unique("early")) == (False, 0)
    client.send(wire.pingreq())
    client.expect(wire.pingresp())


@COMMANDS
def test_runs_on_uvloops_event_loop(gateway, raw, twistd):
    gw = gateway(twistd=twistd)
    gw.wait_for_log("event loop: uvloop)")
    assert raw(gw.port).connect(unique("uvloop")) == (False, 0)


def test_without_config_listens_on_loopback_only(gateway, raw):
    gw = gateway(use_config=False)  # mqttgateway -p PORT
    gw.wait_for_log(f"listening for mqtt on 127.0.0.1:{gw.port}")
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(gw.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", gw.port)}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", gw.port), timeout=5).close()
    # Local-only mode lets anonymous clients in.
    assert raw(gw.port).connect(unique("local")) == (False, 0)


def test_twistd_accepts_the_asyncio_reactor_by_name(gateway, raw):
    gw = gateway(twistd=True, twistd_options=["-r", "asyncio"])
    assert raw(gw.port).connect(unique("asyncio")) == (False, 0)


def test_twistd_refuses_another_reactor(tmp_path):
    conf = tmp_path / "gateway.conf"
    conf.write_text(config_text(free_port()))
    done = run_briefly(twistd_command("-c", str(conf), twistd_options=["-r", "epoll"]))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "needs the asyncio reactor" in output
    assert "Traceback" not in output


# --- stopping -------------------------------------------------------------------------


@COMMANDS
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly(gateway, raw, twistd, sig):
    gw = gateway(twistd=twistd, preexec_fn=default_sigint)
    client = raw(gw.port)
    assert client.connect(unique("stopping")) == (False, 0)
    gw.stop(sig)
    gw.wait_for_log("mqttgateway stopped")
    assert "Traceback" not in gw.stderr
    client.expect_closed()


@COMMANDS
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exit_status_is_0(gateway, twistd, sig):
    gw = gateway(twistd=twistd, preexec_fn=default_sigint)
    status = gw.stop(sig)
    gw.wait_for_log("mqttgateway stopped")
    assert status == 0


# --- SIGHUP ---------------------------------------------------------------------------


@COMMANDS
def test_sighup_reloads_and_keeps_connections(gateway, paho, twistd):
    gw = gateway("max_inflight_messages 20", "sys_interval 0", twistd=twistd)
    assert inflight_window(gw.port) == 10
    client = paho(gw.port, unique("reload"))
    client.connect()
    topic = unique("e2e/reload")
    client.subscribe(topic, qos=1)
    client.subscribe("$SYS/broker/uptime")

    gw.config.write_text(config_text(gw.port, ["max_inflight_messages 5", "sys_interval 1"]))
    gw.reload("configuration reloaded")

    # sys_interval was 0 ($SYS off): an uptime message shows the new value is in force.
    client.wait_for("$SYS/broker/uptime")
    assert inflight_window(gw.port) == 5
    # The connection made before the reload is still the same, working one.
    client.publish(topic, b"after reload", qos=1)
    assert client.wait_for(topic)[-1].payload == b"after reload"
    assert client.disconnects == []
    assert client.connacks.empty(), "paho reconnected"
    assert "reload failed" not in gw.stderr


@COMMANDS
def test_sighup_with_a_broken_file_keeps_serving(gateway, paho, raw, twistd):
    gw = gateway("max_inflight_messages 20", twistd=twistd)
    client = paho(gw.port, unique("reload-broken"))
    client.connect()
    topic = unique("e2e/reload-broken")
    client.subscribe(topic, qos=1)

    gw.config.write_text(config_text(gw.port, ["max_inflight_messages ten"]))
    mark = gw.reload("reload failed")
    gw.wait_for_log(f"{gw.config}:3: max_inflight_messages: expected an integer", mark)
    assert "configuration reloaded" not in gw.stderr[mark:]

    client.publish(topic, b"still serving", qos=1)
    assert client.wait_for(topic)[-1].payload == b"still serving"
    assert client.disconnects == []
    assert raw(gw.port).connect(unique("after-broken-reload")) == (False, 0)
    assert inflight_window(gw.port) == 10  # the running limits are unchanged


# --- command line ---------------------------------------------------------------------


def test_twistd_plugin_help_lists_options():
    done = run_briefly([str(TWISTD), "-n", "mqttgateway", "--help"])
    assert done.returncode == 0, done.stderr
    for option in ("-c, --config=", "-p, --port=", "-v, --verbose"):
        assert option in done.stdout


@pytest.mark.parametrize(
    "flag",
    [
        "--help",
        "-h",
    ],
)
def test_command_help(flag):
    done = run_briefly(cli_command(flag))
    assert done.returncode == 0, done.stderr
    assert "Usage: mqttgateway" in done.stdout
    for option in ("-c, --config=", "-p, --port=", "-v, --verbose", "-d, --daemon"):
        assert option in done.stdout


@pytest.mark.parametrize(
    "args, error",
    [
        pytest.param(["--bogus"], "option --bogus not recognized", id="unknown-flag"),
        pytest.param(["-p", "notaport"], "--port: expected an integer", id="port-not-a-number"),
        pytest.param(["-p", "70000"], "--port: 70000 is not between 1 and 65535", id="port-out-of-range"),
    ],
)
def test_command_bad_usage_exits_2(args, error):
    done = run_briefly(cli_command(*args))
    assert done.returncode == 2, done.stderr
    assert error in done.stderr
    assert "Usage: mqttgateway" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_twistd_bad_port_flag_fails_without_traceback():
    done = run_briefly(twistd_command("-p", "notaport"))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "--port: expected an integer, got 'notaport'" in output
    assert "Traceback" not in output


def unsupported_key() -> str:
    """A Mosquitto key the gateway refuses (the table shrinks over time)."""
    if not NOT_SUPPORTED:
        pytest.skip("every Mosquitto key is supported")
    return sorted(NOT_SUPPORTED)[0]


@COMMANDS
@pytest.mark.parametrize(
    "template, error",
    [
        pytest.param("bad-integer.conf", "max_inflight_messages: expected an integer", id="bad-integer"),
        pytest.param("unknown-key.conf", "no_such_key: unknown configuration key", id="unknown-key"),
        pytest.param("not-supported.conf", "{key}: not supported: {reason}", id="not-supported"),
    ],
)
def test_bad_config_exits_1_naming_file_line_and_key(tmp_path, twistd, template, error):
    key = unsupported_key() if "{key}" in error else ""
    conf = render(template, tmp_path / template, port=free_port(), unsupported_key=key)
    done = run_briefly(command(twistd, "-c", str(conf)))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"{conf}:3: {error.format(key=key, reason=NOT_SUPPORTED.get(key))}" in done.stderr
    assert "Traceback" not in output


def test_unreadable_password_file_names_config_line(tmp_path):
    missing = tmp_path / "no-such-passwords"
    conf = render("missing-password-file.conf", tmp_path / "gateway.conf", port=free_port(), missing=missing)
    done = run_briefly(cli_command("-c", str(conf)))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{conf}:3: password_file: " in done.stderr


def test_port_in_use_fails_without_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        conf = tmp_path / "gateway.conf"
        conf.write_text(config_text(taken.getsockname()[1]))
        done = run_briefly(cli_command("-c", str(conf)))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Address already in use" in output
    assert "Traceback" not in output


@COMMANDS
def test_startup_failure_reaches_stderr_when_logging_to_a_file(tmp_path, twistd):
    """Once twistd logs, stderr goes into the log: a busy port must still be reported
    on the terminal (as Mosquitto does), and in the log file."""
    log = tmp_path / "gateway.log"
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "gateway.conf"
        conf.write_text(config_text(port, [f"log_dest file {log}"]))
        done = run_briefly(command(twistd, "-c", str(conf)))
    output = done.stdout + done.stderr
    reason = f"{conf}:1: listener: cannot listen on {HOST}:{port}: "
    assert done.returncode == 1, output
    assert reason in done.stderr and "Address already in use" in done.stderr
    assert reason in log.read_text()
    assert "Traceback" not in output + log.read_text()


def test_daemon_startup_failure_is_reported_by_the_command(tmp_path):
    """``mqttgateway -d``: the command waits for the daemon to start; a busy port makes
    it exit 1 (twistd prints the first 100 bytes of the reason), the whole reason in
    the log file."""
    log = tmp_path / "gateway.log"
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        conf = tmp_path / "gateway.conf"
        conf.write_text(config_text(taken.getsockname()[1], [f"log_dest file {log}"]))
        done = run_briefly(cli_command("-d", "-c", str(conf)))
    assert done.returncode == 1, done.stderr
    assert "StartupFailed: " in done.stderr
    assert f"{conf}:1: listener: cannot listen on" in log.read_text()
    assert "Address already in use" in log.read_text()


@COMMANDS
def test_startup_failure_is_printed_once_when_logging_to_stderr(tmp_path, twistd):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        conf = tmp_path / "gateway.conf"
        conf.write_text(config_text(taken.getsockname()[1]))
        done = run_briefly(command(twistd, "-c", str(conf)))
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("Address already in use") == 1, done.stderr


@COMMANDS
def test_unwritable_log_file_names_its_config_line(tmp_path, twistd):
    missing = tmp_path / "no-such-directory" / "gateway.log"
    conf = tmp_path / "gateway.conf"
    conf.write_text(config_text(free_port(), [f"log_dest file {missing}"]))
    done = run_briefly(command(twistd, "-c", str(conf)))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"{conf}:3: log_dest: cannot open {missing}: No such file or directory" in done.stderr
    assert "Traceback" not in output


# --- pid_file -------------------------------------------------------------------------


@COMMANDS
def test_pid_file_holds_the_pid_until_a_clean_exit(gateway, tmp_path, twistd):
    pid_file = tmp_path / "gateway.pid"
    gw = gateway(f"pid_file {pid_file}", twistd=twistd)
    assert pid_file.read_text().strip() == str(gw.proc.pid)
    assert gw.stop() == 0
    assert not pid_file.exists()


def test_pid_file_shared_with_twistd_pidfile(gateway, tmp_path):
    """twistd --pidfile naming the same file: twistd writes and removes it, once."""
    pid_file = tmp_path / "gateway.pid"
    gw = gateway(f"pid_file {pid_file}", twistd=True, twistd_options=[f"--pidfile={pid_file}"])
    assert pid_file.read_text().strip() == str(gw.proc.pid)
    assert gw.stop() == 0
    assert not pid_file.exists()
    assert "Failed to unlink PID file" not in gw.stderr


@COMMANDS
def test_unwritable_pid_file_stops_startup(tmp_path, twistd):
    missing = tmp_path / "no-such-directory" / "gateway.pid"
    log = tmp_path / "gateway.log"
    conf = tmp_path / "gateway.conf"
    conf.write_text(config_text(free_port(), [f"pid_file {missing}", f"log_dest file {log}"]))
    done = run_briefly(command(twistd, "-c", str(conf)))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"{conf}:3: pid_file: cannot write {missing}: No such file or directory" in done.stderr
    assert "Traceback" not in output


def test_failed_start_removes_the_pid_file(tmp_path):
    pid_file = tmp_path / "gateway.pid"
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        conf = tmp_path / "gateway.conf"
        conf.write_text(config_text(taken.getsockname()[1], [f"pid_file {pid_file}"]))
        done = run_briefly(cli_command("-c", str(conf)))
    assert done.returncode == 1, done.stderr
    assert not pid_file.exists()


def test_daemon_flag_runs_in_the_background(tmp_path, raw):
    """``mqttgateway -d``: the command returns at once, the daemon serves and logs
    where ``log_dest`` says, and SIGTERM stops it cleanly."""
    port = free_port()
    log = tmp_path / "gateway.log"
    pid_file = tmp_path / "gateway.pid"
    conf = tmp_path / "gateway.conf"
    conf.write_text(config_text(port, [f"log_dest file {log}", f"pid_file {pid_file}"]))
    done = run_briefly(cli_command("-d", "-c", str(conf)))
    assert done.returncode == 0, done.stderr
    daemon = None
    try:
        for _ in range(200):  # up to 10 s, only to avoid a hang
            if log.exists() and "listening for mqtt" in log.read_text():
                break
            time.sleep(0.05)
        assert raw(port).connect(unique("daemon")) == (False, 0)
        daemon = next(
            c.pid
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        )
        assert pid_file.read_text().strip() == str(daemon)
    finally:
        if daemon is not None:
            proc = psutil.Process(daemon)
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    assert "mqttgateway stopped" in log.read_text()
    assert not pid_file.exists()
