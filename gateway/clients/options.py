"""The command line of the three clients, read as Mosquitto 2.0's ``client_shared.c`` does.

Same flags, same defaults, same checks in the same order and the same error
texts, so a script that drives ``mosquitto_pub`` gets the same answers from
``mqttgateway-pub``. Options are read first from ``~/.config/<program>``
(``$XDG_CONFIG_HOME/<program>``: one option and its argument a line, ``#``
comments), then from ``argv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gateway.clients.checks import (
    arg_bytes, as_text, atof, atoi, check_format, pub_topic_ok, strtol, sub_topic_ok, valid_utf8,
)
from gateway.mqtt.reasons import PROPERTIES, REPEATABLE, WILL, PacketType, PropertyId, PropType

PUB, SUB, RR = "pub", "sub", "rr"
PROGRAMS = {PUB: "mqttgateway-pub", SUB: "mqttgateway-sub", RR: "mqttgateway-rr"}
MAX_PAYLOAD = 268_435_455
UINT32_MAX = 0xFFFF_FFFF
TOPIC_HIERARCHY_LIMIT = 200

# How a message reaches mqttgateway-pub (and -rr): Mosquitto's MSGMODE_*.
MSG_CMD, MSG_STDIN_LINE, MSG_STDIN_FILE, MSG_FILE, MSG_NULL = "m", "l", "s", "f", "n"

#: ``-D COMMAND ...`` names, as ``mosquitto_string_to_command`` knows them.
COMMANDS = {
    "connect": PacketType.CONNECT, "connack": PacketType.CONNACK, "publish": PacketType.PUBLISH,
    "puback": PacketType.PUBACK, "pubrec": PacketType.PUBREC, "pubrel": PacketType.PUBREL,
    "pubcomp": PacketType.PUBCOMP, "subscribe": PacketType.SUBSCRIBE,
    "unsubscribe": PacketType.UNSUBSCRIBE, "disconnect": PacketType.DISCONNECT,
    "auth": PacketType.AUTH, "will": WILL,
}
#: Property names as Mosquitto spells them: ``message-expiry-interval`` and so on.
PROPERTY_NAMES = {p.name.lower().replace("_", "-"): p for p in PropertyId}
# Where a -D property goes, and how config_load names the packet in its errors.
_PROP_LISTS = {
    PacketType.CONNECT: "CONNECT", PacketType.PUBLISH: "PUBLISH", PacketType.SUBSCRIBE: "SUBSCRIBE",
    PacketType.UNSUBSCRIBE: "UNSUBSCRIBE", PacketType.DISCONNECT: "DISCONNECT", WILL: "Will",
}
# libmosquitto's type numbers, for "Error adding property NAME TYPE".
_MOSQ_TYPE = {PropType.BYTE: 1, PropType.U16: 2, PropType.U32: 3, PropType.VARINT: 4,
              PropType.BIN: 5, PropType.STR: 6, PropType.PAIR: 7}
_BOOLEAN_PROPS = {
    PropertyId.REQUEST_PROBLEM_INFORMATION, PropertyId.REQUEST_RESPONSE_INFORMATION,
    PropertyId.MAXIMUM_QOS, PropertyId.RETAIN_AVAILABLE, PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE,
    PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE, PropertyId.SHARED_SUBSCRIPTION_AVAILABLE,
}
_PROTOCOL_ERROR = "A network protocol error occurred when communicating with the broker."
_NOT_HERE = ("--tls-engine", "--tls-engine-kpass-sha1", "--psk", "--psk-identity", "--proxy")


class UsageError(Exception):
    """A command line Mosquitto refuses: ``text`` goes to stderr as is and, with
    ``hint``, the pointer to ``--help`` after it; the exit status is 1."""

    def __init__(self, text: str, hint: bool = True) -> None:
        super().__init__(text)
        self.text = text
        self.hint = hint


class HelpRequested(Exception):
    """``--help``: print the usage text (exit status 1, as Mosquitto's)."""


class VersionRequested(Exception):
    """``--version``."""


@dataclass
class Options:
    """Everything the command line says; Mosquitto's ``struct mosq_config``."""

    kind: str
    id: str | None = None
    id_prefix: str | None = None
    protocol_version: int = 4
    keepalive: int = 60
    host: str | None = None
    port: int | None = None  # None: 1883, or 8883 with --cafile/--capath; 0: --unix
    qos: int = 0
    retain: bool = False
    pub_mode: str | None = None
    file_input: str | None = None
    message: bytes = b""
    topic: str | None = None
    bind_address: str | None = None
    repeat_count: int = 1
    repeat_delay: float = 0.0
    debug: bool = False
    quiet: bool = False
    max_inflight: int = 20
    username: str | None = None
    password: str | None = None
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    cafile: str | None = None
    capath: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    ciphers: str | None = None
    insecure: bool = False
    tls_alpn: str | None = None
    tls_version: str | None = None
    tls_use_os_certs: bool = False
    clean_session: bool = True
    topics: list[str] = field(default_factory=list)
    exit_after_sub: bool = False
    no_retain: bool = False
    retained_only: bool = False
    remove_retained: bool = False
    filter_outs: list[str] = field(default_factory=list)
    unsub_topics: list[str] = field(default_factory=list)
    verbose: bool = False
    eol: bool = True
    msg_count: int = 0
    format: str | None = None
    pretty: bool = False
    timeout: int = 0
    sub_opts: int = 0
    session_expiry_interval: int = -1
    random_filter: int = 10000
    have_topic_alias: bool = False
    response_topic: str | None = None
    tcp_nodelay: bool = False
    #: -D properties per packet ("CONNECT", "PUBLISH", ..., "Will"), in command-line order.
    raw_props: dict[str, list[tuple[PropertyId, object]]] = field(default_factory=dict)
    #: The same as the codec's property dicts, once checked.
    props: dict[str, dict] = field(default_factory=dict)

    @property
    def program(self) -> str:
        return PROGRAMS[self.kind]

    def properties(self, packet: str) -> dict:
        """The codec's property dict for ``packet`` ("PUBLISH", ...), a fresh copy."""
        return {k: list(v) if k in REPEATABLE else v for k, v in self.props.get(packet, {}).items()}


# --- the parser ---------------------------------------------------------------------

# Long spellings of short options (client_config_line_proc accepts both).
_ALIASES = {
    "--disable-clean-session": "-c", "--debug": "-d", "--property": "-D", "--file": "-f",
    "--host": "-h", "--id": "-i", "--id-prefix": "-I", "--keepalive": "-k", "--url": "-L",
    "--stdin-line": "-l", "--message": "-m", "--null-message": "-n", "--port": "-p",
    "--pw": "-P", "--qos": "-q", "--retain": "-r", "--stdin-file": "-s", "--topic": "-t",
    "--filter-out": "-T", "--unsubscribe": "-U", "--username": "-u",
    "--protocol-version": "-V", "--verbose": "-v",
}
# Options only some programs take; the others call them unknown.
_ONLY = {
    "-C": {SUB}, "-e": {RR}, "-E": {SUB}, "-l": {PUB}, "-r": {PUB}, "--random-filter": {SUB},
    "--remove-retained": {SUB}, "--repeat": {PUB}, "--repeat-delay": {PUB},
    "--retained-only": {SUB}, "-T": {SUB}, "-U": {SUB},
    "-f": {PUB, RR}, "-m": {PUB, RR}, "-n": {PUB, RR}, "-s": {PUB, RR},
    "-F": {SUB, RR}, "-N": {SUB, RR}, "--pretty": {SUB, RR}, "-R": {SUB, RR},
    "--retain-as-published": {SUB, RR}, "-v": {SUB, RR}, "-W": {SUB, RR},
}


class _Parser:
    """``client_config_line_proc`` over one argument list."""

    def __init__(self, cfg: Options, args: list[str]) -> None:
        self.cfg = cfg
        self.args = args
        self.i = 0

    def value(self, flag: str, what: str) -> str:
        if self.i == len(self.args) - 1:
            raise UsageError(f"Error: {flag} argument given but no {what} specified.\n\n")
        self.i += 1
        return self.args[self.i]

    def run(self) -> None:
        while self.i < len(self.args):
            arg = self.args[self.i]
            flag = _ALIASES.get(arg, arg)
            handler = _HANDLERS.get(flag)
            if handler is None or self.cfg.kind not in _ONLY.get(flag, {PUB, SUB, RR}):
                raise UsageError(f"Error: Unknown option '{arg}'.\n")
            handler(self)
            self.i += 1

    def message_mode(self, mode: str) -> None:
        if self.cfg.pub_mode is not None:
            raise UsageError("Error: Only one type of message can be sent at once.\n\n")
        if mode in (MSG_FILE, MSG_CMD):
            flag = "-f" if mode == MSG_FILE else "-m"
            text = self.value(flag, "file" if mode == MSG_FILE else "message")
            if mode == MSG_FILE:
                self.cfg.file_input = text
            else:
                self.cfg.message = arg_bytes(text)
                if len(self.cfg.message) > MAX_PAYLOAD:
                    raise UsageError(f"Error: Message length must be less than {MAX_PAYLOAD} bytes.\n\n")
        self.cfg.pub_mode = mode

    def topic(self, kind: str, text: str, arg: str) -> None:
        add_topic(self.cfg, kind, text, arg)

    def filter_list(self, flag: str, what: str, target: list[str]) -> None:
        text = self.value(flag, what)
        if not valid_utf8(text):
            raise UsageError(f"Error: Malformed UTF-8 in {flag} argument.\n\n")
        if not sub_topic_ok(text):
            kind = "filter" if flag == "-T" else "unsubscribe"
            raise UsageError(f"Error: Invalid {kind} topic '{text}', are all '+' and '#' "
                             "wildcards correct?\n")
        target.append(as_text(text))

    def ranged(self, flag: str, what: str, low: int, high: int, error: str) -> int:
        n = atoi(self.value(flag, what))
        if not low <= n <= high:
            raise UsageError(error.format(n))
        return n

    def property(self) -> None:
        self.i += 1
        parse_property(self.cfg, self.args, self)
        self.cfg.protocol_version = 5


def add_topic(cfg: Options, kind: str, topic: str, arg: str) -> None:
    """``cfg_add_topic``: ``kind`` is the program, or "response" for ``-e``."""
    if not valid_utf8(topic):
        raise UsageError(f"Error: Malformed UTF-8 in {arg} argument.\n\n")
    if kind in (PUB, RR, "response"):
        if not pub_topic_ok(topic):
            what = "response" if kind == "response" else "publish"
            raise UsageError(f"Error: Invalid {what} topic '{topic}', does it contain '+' or '#'?\n")
        if kind == "response":
            cfg.response_topic = as_text(topic)
        else:
            cfg.topic = as_text(topic)
    else:
        if not sub_topic_ok(topic):
            raise UsageError(f"Error: Invalid subscription topic '{topic}', are all '+' and '#' "
                             "wildcards correct?\n")
        cfg.topics.append(as_text(topic))


def parse_url(cfg: Options, url: str) -> None:
    """``-L mqtt(s)://[username[:password]@]host[:port]/topic``."""
    low = url.lower()
    if low.startswith("mqtt://"):
        url, cfg.port = url[7:], 1883
    elif low.startswith("mqtts://"):
        url, cfg.port, cfg.tls_use_os_certs = url[8:], 8883, True
    else:
        raise UsageError("Error: unsupported URL scheme.\n\n")
    if "/" not in url:
        raise UsageError("Error: Invalid URL for -L argument specified - topic missing.\n")
    url, topic = url.split("/", 1)
    add_topic(cfg, cfg.kind, topic, "-L topic")
    if "@" in url:
        userinfo, url = url.split("@", 1)
        if ":" in userinfo:
            userinfo, cfg.password = userinfo.split(":", 1)
        cfg.username = userinfo
    if ":" in url:
        url, port = url.split(":", 1)
        cfg.port = atoi(port)
    cfg.host = url


def parse_property(cfg: Options, args: list[str], p: _Parser) -> None:
    """``-D command identifier value`` (``cfg_parse_property``); ``p.i`` is at the command."""
    i = p.i
    not_enough = "Error: --property argument given but not enough arguments specified.\n\n"
    if i + 2 > len(args) - 1:
        raise UsageError(not_enough)
    cmdname, propname = args[i], args[i + 1]
    cmd = COMMANDS.get(cmdname.lower())
    if cmd is None:
        raise UsageError("Error: Invalid command given in --property argument.\n\n")
    ident = PROPERTY_NAMES.get(propname.lower())
    if ident is None:
        raise UsageError("Error: Invalid property name given in --property argument.\n\n")
    ptype, allowed = PROPERTIES[ident]
    if cmd not in allowed:
        raise UsageError(f"Error: {propname} property not allowed for {cmdname} in --property argument.\n\n")
    key = None
    if ident == PropertyId.USER_PROPERTY:
        if i + 3 > len(args) - 1:
            raise UsageError(not_enough)
        key, value = args[i + 2], args[i + 3]
        p.i = i + 3
    else:
        value = args[i + 2]
        p.i = i + 2
    unsupported = f"Error: {propname} property not supported for {cmdname} in --property argument.\n\n"
    if cmd == PacketType.PUBLISH:
        if ident == PropertyId.TOPIC_ALIAS:
            cfg.have_topic_alias = True
        if ident == PropertyId.SUBSCRIPTION_IDENTIFIER:
            raise UsageError(unsupported)
    elif cmd == PacketType.SUBSCRIBE:
        if ident not in (PropertyId.SUBSCRIPTION_IDENTIFIER, PropertyId.USER_PROPERTY):
            raise UsageError(unsupported)
    elif cmd not in _PROP_LISTS:
        if cmd == PacketType.CONNACK:
            raise UsageError("")
        raise UsageError(unsupported)
    if ptype in (PropType.BYTE, PropType.U16, PropType.U32, PropType.VARINT):
        top = {PropType.BYTE: 0xFF, PropType.U16: 0xFFFF}.get(ptype, UINT32_MAX)
        number = atoi(value)
        if not 0 <= number <= top:
            raise UsageError(f"Error: Property value ({number}) out of range for property {propname}.\n\n")
        parsed: object = number
    elif ptype == PropType.BIN:
        parsed = arg_bytes(value)
        if len(parsed) > 0xFFFF:  # type: ignore[arg-type]
            raise UsageError(f"Error: Property value too long for property {propname}.\n\n")
    else:
        texts = [value] if key is None else [key, value]
        if not all(valid_utf8(t) and len(arg_bytes(t)) <= 0xFFFF for t in texts):
            raise UsageError(f"Error adding property {propname} {_MOSQ_TYPE[ptype]}\n")
        parsed = as_text(value) if key is None else (as_text(key), as_text(value))
    cfg.raw_props.setdefault(_PROP_LISTS[cmd], []).append((ident, parsed))


def _check_props(entries: list[tuple[PropertyId, object]]) -> tuple[dict, str | None]:
    """``mosquitto_property_check_all`` for one list: (codec dict, error text or None)."""
    out: dict = {}
    for ident, value in entries:
        if ident in _BOOLEAN_PROPS and value > 1:  # type: ignore[operator]
            return out, _PROTOCOL_ERROR
        if ident in (PropertyId.MAXIMUM_PACKET_SIZE, PropertyId.RECEIVE_MAXIMUM,
                     PropertyId.TOPIC_ALIAS) and value == 0:
            return out, _PROTOCOL_ERROR
        if ident in REPEATABLE:
            out.setdefault(ident, []).append(value)
        elif ident in out:
            return out, "Duplicate property in property list"
        else:
            out[ident] = value
    return out, None


def _handlers() -> dict:
    """Option -> handler(parser); a table rather than Mosquitto's if-chain."""

    def setter(name: str, flag: str, what: str, conv=str):  # noqa: ANN001, ANN202
        return lambda p: setattr(p.cfg, name, conv(p.value(flag, what)))

    def flag_on(name: str, value: object = True):  # noqa: ANN202
        return lambda p: setattr(p.cfg, name, value)

    def not_here(p: _Parser) -> None:
        raise UsageError(f"Error: {p.args[p.i]} is not supported by {p.cfg.program}.\n")

    def ident(p: _Parser, prefix: bool) -> None:
        if (p.cfg.id if prefix else p.cfg.id_prefix) is not None:
            raise UsageError("Error: -i and -I argument cannot be used together.\n\n")
        text = p.value("-I" if prefix else "-i", "id prefix" if prefix else "id")
        setattr(p.cfg, "id_prefix" if prefix else "id", text)

    def count(p: _Parser) -> None:
        n = atoi(p.value("-C", "count"))
        if n < 1:
            raise UsageError(f'Error: Invalid message count "{n}".\n\n')
        p.cfg.msg_count = n

    def timeout(p: _Parser) -> None:
        n = atoi(p.value("-W", "timeout"))
        if n < 1:
            raise UsageError(f'Error: Invalid timeout "{n}".\n\n')
        p.cfg.timeout = n

    def fmt(p: _Parser) -> None:
        text = p.value("-F", "format")
        error = check_format(text)
        if error:
            raise UsageError(error)
        p.cfg.format = text

    def version(p: _Parser) -> None:
        text = p.value("--protocol-version", "version")
        levels = {"mqttv31": 3, "31": 3, "mqttv311": 4, "311": 4, "mqttv5": 5, "5": 5}
        if text not in levels:
            raise UsageError("Error: Invalid protocol version argument given.\n\n")
        p.cfg.protocol_version = levels[text]

    def random_filter(p: _Parser) -> None:
        chance = int(10.0 * atof(p.value("--random-filter", "chance")))
        if not 1 <= chance <= 10000:
            raise UsageError("Error: --random-filter chance must be between 0.1-100.0\n\n")
        p.cfg.random_filter = chance

    def repeat(p: _Parser) -> None:
        n = atoi(p.value("--repeat", "count"))
        if n < 1:
            raise UsageError("Error: --repeat argument must be >0.\n\n")
        p.cfg.repeat_count = n

    def repeat_delay(p: _Parser) -> None:
        delay = atof(p.value("--repeat-delay", "time"))
        if delay < 0:
            raise UsageError("Error: --repeat-delay argument must be >=0.0.\n\n")
        p.cfg.repeat_delay = delay

    def will_topic(p: _Parser) -> None:
        text = p.value("--will-topic", "will topic")
        if not valid_utf8(text):
            raise UsageError("Error: Malformed UTF-8 in --will-topic argument.\n\n")
        if not pub_topic_ok(text):
            raise UsageError(f"Error: Invalid will topic '{text}', does it contain '+' or '#'?\n")
        p.cfg.will_topic = as_text(text)

    def expiry(p: _Parser) -> None:
        text = p.value("-x", "session expiry interval")
        if text == "∞":
            p.cfg.session_expiry_interval = UINT32_MAX
            return
        n = strtol(text)
        if n is None:
            raise UsageError("Error: session-expiry-interval not a number.\n\n")
        if not -1 <= n <= UINT32_MAX:
            raise UsageError("Error: session-expiry-interval out of range.\n\n")
        p.cfg.session_expiry_interval = UINT32_MAX if n == -1 else n

    def unix(p: _Parser) -> None:
        p.cfg.host = p.value("--unix", "socket path")
        p.cfg.port = 0

    def keyform(p: _Parser) -> None:
        if p.value("--keyform", "keyform") != "pem":
            raise UsageError(f"Error: only the 'pem' keyform is supported by {p.cfg.program}.\n")

    def no_retain(p: _Parser) -> None:
        p.cfg.no_retain = True
        p.cfg.sub_opts |= 0x20  # MQTT_SUB_OPT_SEND_RETAIN_NEVER

    def retain_as_published(p: _Parser) -> None:
        p.cfg.sub_opts |= 0x08

    def help_(p: _Parser) -> None:
        raise HelpRequested()

    def version_(p: _Parser) -> None:
        raise VersionRequested()

    table = {
        "-A": setter("bind_address", "-A", "address"),
        "--cafile": setter("cafile", "--cafile", "file"),
        "--capath": setter("capath", "--capath", "directory"),
        "--cert": setter("certfile", "--cert", "file"),
        "--ciphers": setter("ciphers", "--ciphers", "ciphers"),
        "-C": count,
        "-c": flag_on("clean_session", False),
        "-d": flag_on("debug"),
        "-D": _Parser.property,
        "-e": lambda p: p.topic("response", p.value("-e", "response topic"), "-e"),
        "-E": flag_on("exit_after_sub"),
        "-f": lambda p: p.message_mode(MSG_FILE),
        "-F": fmt,
        "--help": help_,
        "-h": setter("host", "-h", "host"),
        "--insecure": flag_on("insecure"),
        "-i": lambda p: ident(p, False),
        "-I": lambda p: ident(p, True),
        "-k": lambda p: setattr(p.cfg, "keepalive", p.ranged(
            "-k", "keepalive", 5, 65535,
            "Error: Invalid keepalive given, it must be between 5 and 65535 inclusive.\n\n")),
        "--key": setter("keyfile", "--key", "file"),
        "--keyform": keyform,
        "-L": lambda p: parse_url(p.cfg, p.value("-L", "URL")),
        "-l": lambda p: p.message_mode(MSG_STDIN_LINE),
        "-m": lambda p: p.message_mode(MSG_CMD),
        "-M": lambda p: setattr(p.cfg, "max_inflight", p.ranged(
            "-M", "max_inflight", 1, 1 << 31,
            "Error: Maximum inflight messages must be greater than 0.\n\n")),
        "--nodelay": flag_on("tcp_nodelay"),
        "-n": lambda p: p.message_mode(MSG_NULL),
        "-N": flag_on("eol", False),
        "-p": lambda p: setattr(p.cfg, "port", p.ranged(
            "-p", "port", 0, 65535, "Error: Invalid port given: {}\n")),
        "--pretty": flag_on("pretty"),
        "-P": setter("password", "-P", "password"),
        "-q": lambda p: setattr(p.cfg, "qos", p.ranged("-q", "QoS", 0, 2, "Error: Invalid QoS given: {}\n")),
        "--quiet": flag_on("quiet"),
        "-r": flag_on("retain"),
        "-R": no_retain,
        "--random-filter": random_filter,
        "--remove-retained": flag_on("remove_retained"),
        "--repeat": repeat,
        "--repeat-delay": repeat_delay,
        "--retain-as-published": retain_as_published,
        "--retained-only": flag_on("retained_only"),
        "-s": lambda p: p.message_mode(MSG_STDIN_FILE),
        "-t": lambda p: p.topic(p.cfg.kind, p.value("-t", "topic"), "-t"),
        "-T": lambda p: p.filter_list("-T", "topic filter", p.cfg.filter_outs),
        "--tls-alpn": setter("tls_alpn", "--tls-alpn", "protocol"),
        "--tls-use-os-certs": flag_on("tls_use_os_certs"),
        "--tls-version": setter("tls_version", "--tls-version", "version"),
        "-U": lambda p: p.filter_list("-U", "unsubscribe topic", p.cfg.unsub_topics),
        "-u": setter("username", "-u", "username"),
        "--unix": unix,
        "-V": version,
        "-v": flag_on("verbose"),
        "--version": version_,
        "-W": timeout,
        "--will-payload": setter("will_payload", "--will-payload", "will payload", arg_bytes),
        "--will-qos": lambda p: setattr(p.cfg, "will_qos", p.ranged(
            "--will-qos", "will QoS", 0, 2, "Error: Invalid will QoS {}.\n\n")),
        "--will-retain": flag_on("will_retain"),
        "--will-topic": will_topic,
        "-x": expiry,
    }
    table.update({name: not_here for name in _NOT_HERE})
    return table


_HANDLERS = _handlers()


def config_file(kind: str) -> str | None:
    """Where Mosquitto would look for defaults, under this program's name."""
    base = os.environ.get("XDG_CONFIG_HOME")
    if base:
        return os.path.join(base, PROGRAMS[kind])
    home = os.environ.get("HOME")
    return os.path.join(home, ".config", PROGRAMS[kind]) if home else None


def _file_args(path: str | None) -> list[list[str]]:
    if not path:
        return []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return []
    out = []
    for raw in lines:
        line = os.fsdecode(raw.rstrip(b"\r"))
        first, _, rest = line.lstrip(" ").partition(" ")
        if line.startswith("#") or not first:
            continue
        out.append([first, rest] if rest else [first])
    return out


def parse(kind: str, argv: list[str]) -> Options:
    """``client_config_load``: defaults, the config file, ``argv``, then the checks
    that need the whole command line. Raises UsageError, HelpRequested, VersionRequested."""
    cfg = Options(kind)
    if kind == RR:
        cfg.protocol_version, cfg.msg_count = 5, 1
    for args in [*_file_args(config_file(kind)), argv]:
        _Parser(cfg, args).run()
    if cfg.will_payload is not None and cfg.will_topic is None:
        raise UsageError("Error: Will payload given, but no will topic given.\n")
    if cfg.will_retain and cfg.will_topic is None:
        raise UsageError("Error: Will retain given, but no will topic given.\n")
    if (cfg.certfile is None) != (cfg.keyfile is None):
        raise UsageError("Error: Both certfile and keyfile must be provided if one of them is set.\n")
    if cfg.protocol_version == 5:
        if not cfg.clean_session and cfg.session_expiry_interval == -1:
            cfg.session_expiry_interval = UINT32_MAX
        if cfg.session_expiry_interval > 0:
            if cfg.session_expiry_interval == UINT32_MAX and (cfg.id_prefix or cfg.id is None):
                raise UsageError("Error: You must provide a client id if you are using an infinite "
                                 "session expiry interval.\n")
            cfg.raw_props.setdefault("CONNECT", []).append(
                (PropertyId.SESSION_EXPIRY_INTERVAL, cfg.session_expiry_interval))
    elif not cfg.clean_session and (cfg.id_prefix or cfg.id is None):
        raise UsageError("Error: You must provide a client id if you are using the -c option.\n")
    if kind == SUB and not cfg.topics:
        raise UsageError("Error: You must specify a topic to subscribe to.\n")
    if cfg.host is None:
        cfg.host = "localhost"
    for packet in ("CONNECT", "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "DISCONNECT", "Will"):
        props, error = _check_props(cfg.raw_props.get(packet, []))
        if error:
            raise UsageError("" if cfg.quiet else f"Error in {packet} properties: {error}\n")
        cfg.props[packet] = props
    return cfg
