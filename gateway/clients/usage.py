"""``--help`` and ``--version`` texts, laid out as Mosquitto's ``print_usage()``.

The options Mosquitto has and these programs do not (TLS engines, PSK, SOCKS
proxies, SRV lookups) are left out; every other flag is described where
Mosquitto describes it, so a reader who knows one text finds the other.
"""

from __future__ import annotations

from gateway import __version__
from gateway.clients.options import PROGRAMS, PUB, RR, SUB

_SYNOPSIS = {
    PUB: [
        "{[-h host] [--unix path] [-p port] [-u username] [-P password] -t topic | -L URL}",
        "{-f file | -l | -n | -m message}",
        "[-c] [-k keepalive] [-q qos] [-r] [--repeat N] [--repeat-delay time] [-x session-expiry]",
        "[-A bind_address] [--nodelay]",
        "[-i id] [-I id_prefix]",
        "[-d] [--quiet]",
        "[-M max_inflight]",
        "[-u username [-P password]]",
        "[--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]",
        "[{--cafile file | --capath dir} [--cert file] [--key file]",
        "  [--ciphers ciphers] [--insecure]",
        "  [--tls-alpn protocol] [--tls-version version] [--keyform pem]",
        "  [--tls-use-os-certs]",
        "[--property command identifier value]",
        "[-D command identifier value]",
    ],
    SUB: [
        "{[-h host] [--unix path] [-p port] [-u username] [-P password] -t topic | -L URL [-t topic]}",
        "[-c] [-k keepalive] [-q qos] [-x session-expiry-interval]",
        "[-C msg_count] [-E] [-R] [--retained-only] [--remove-retained] [-T filter_out] [-U topic ...]",
        "[-F format] [--pretty] [--random-filter chance] [--retain-as-published]",
        "[-W timeout_secs]",
        "[-A bind_address] [--nodelay]",
        "[-i id] [-I id_prefix]",
        "[-d] [-N] [--quiet] [-v]",
        "[--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]",
        "[{--cafile file | --capath dir} [--cert file] [--key file]",
        "  [--ciphers ciphers] [--insecure]",
        "  [--tls-alpn protocol] [--tls-version version] [--keyform pem]",
        "  [--tls-use-os-certs]",
        "[-D command identifier value]",
    ],
    RR: [
        "{[-h host] [--unix path] [-p port] [-u username] [-P password] -t topic | -L URL} -e response-topic",
        "{-f file | -n | -m message | -s}",
        "[-c] [-k keepalive] [-q qos] [-R] [-x session-expiry-interval]",
        "[-F format] [--pretty] [--retain-as-published]",
        "[-W timeout_secs]",
        "[-A bind_address] [--nodelay]",
        "[-i id] [-I id_prefix]",
        "[-d] [-N] [--quiet] [-v]",
        "[-M max_inflight]",
        "[--will-topic [--will-payload payload] [--will-qos qos] [--will-retain]]",
        "[{--cafile file | --capath dir} [--cert file] [--key file]",
        "  [--ciphers ciphers] [--insecure]",
        "  [--tls-alpn protocol] [--tls-version version] [--keyform pem]",
        "  [--tls-use-os-certs]",
        "[-D command identifier value]",
    ],
}

_INTRO = {
    PUB: ["{p} is a simple mqtt client that will publish a message on a single topic and exit."],
    SUB: ["{p} is a simple mqtt client that will subscribe to a set of topics and print all "
          "messages it receives."],
    RR: ["{p} is an mqtt client that can be used to publish a request message and wait for a response.",
         "             Defaults to MQTT v5, where the Request-Response feature will be used, but v3.1.1 "
         "can also be used",
         "             with v3.1.1 brokers."],
}

_CLEAN = ["disable clean session/enable persistent client mode",
          "When this argument is used, the broker will be instructed not to clean existing sessions",
          "for the same client id when the client connects, and sessions will never expire when the",
          "client disconnects. MQTT v5 clients can change their session expiry interval with the -x",
          "argument."]
_EXPIRY = ["Set the session-expiry-interval property on the CONNECT packet. Applies to MQTT v5",
           "clients only. Set to 0-4294967294 to specify the session will expire in that many",
           "seconds after the client disconnects, or use -1, 4294967295, or ∞ for a session",
           "that does not expire. Defaults to -1 if -c is also given, or 0 if -c not given."]
_INSECURE = ["do not check that the server certificate hostname matches the remote",
             "hostname. Using this option means that you cannot be sure that the",
             "remote host is the server you wish to connect to and so is insecure.",
             "Do not use this option in a production environment."]
_FORMAT = ["output format: %t topic, %p payload, %x/%X payload in hex, %l length, %q QoS,",
           "%r retained, %m message id, %I ISO 8601 time, %U Unix time, %j/%J JSON, and",
           "the MQTT v5 properties %A %C %D %E %F %P %R %S; @ for strftime fields, \\ escapes."]

# (flag, programs, description lines); descriptions with {p} name the program.
_OPTIONS: list[tuple[str, str, list[str]]] = [
    ("-A", "psr", ["bind the outgoing socket to this host/ip address. Use to control which interface",
                   "the client communicates over."]),
    ("-c", "psr", _CLEAN),
    ("-C", "s", ["disconnect and exit after receiving the 'msg_count' messages."]),
    ("-d", "psr", ["enable debug messages."]),
    ("-D", "psr", ["Define MQTT v5 properties: -D COMMAND PROPERTY VALUE, e.g.",
                   "-D publish message-expiry-interval 30, -D connect user-property key value."]),
    ("-e", "r", ["Response topic. The client will subscribe to this topic to wait for a response."]),
    ("-E", "s", ["Exit once all subscriptions have been acknowledged by the broker."]),
    ("-f", "pr", ["send the contents of a file as the message."]),
    ("-F", "sr", _FORMAT),
    ("-h", "psr", ["mqtt host to connect to. Defaults to localhost."]),
    ("-i", "psr", ["id to use for this client. Defaults to an id the broker assigns (MQTT 3.1.1",
                   "and 5), or mosq- and random characters (MQTT 3.1)."]),
    ("-I", "psr", ["define the client id as id_prefix appended with the process id. Useful for when the",
                   "broker is using the clientid_prefixes option."]),
    ("-k", "psr", ["keep alive in seconds for this client. Defaults to 60."]),
    ("-L", "psr", ["specify user, password, hostname, port and topic as a URL in the form:",
                   "mqtt(s)://[username[:password]@]host[:port]/topic"]),
    ("-l", "p", ["read messages from stdin, sending a separate message for each line."]),
    ("-m", "pr", ["message payload to send."]),
    ("-M", "pr", ["the maximum inflight messages for QoS 1/2.."]),
    ("-n", "pr", ["send a null (zero length) message."]),
    ("-N", "sr", ["do not add an end of line character when printing the payload."]),
    ("-p", "psr", ["network port to connect to. Defaults to 1883 for plain MQTT and 8883 for MQTT over TLS."]),
    ("-P", "psr", ["provide a password"]),
    ("-q", "p", ["quality of service level to use for all messages. Defaults to 0."]),
    ("-q", "s", ["quality of service level to use for the subscription. Defaults to 0."]),
    ("-q", "r", ["quality of service level to use for communications. Defaults to 0."]),
    ("-r", "p", ["message should be retained."]),
    ("-R", "sr", ["do not print stale messages (those with retain set)."]),
    ("-s", "pr", ["read message from stdin, sending the entire input as a message."]),
    ("-t", "p", ["mqtt topic to publish to."]),
    ("-t", "s", ["mqtt topic to subscribe to. May be repeated multiple times."]),
    ("-t", "r", ["topic where the request message will be sent."]),
    ("-T", "s", ["topic string to filter out of results. May be repeated."]),
    ("-u", "psr", ["provide a username"]),
    ("-U", "s", ["unsubscribe from a topic. May be repeated."]),
    ("-v", "sr", ["print published messages verbosely."]),
    ("-V", "ps", ["specify the version of the MQTT protocol to use when connecting.",
                  "Can be mqttv5, mqttv311 or mqttv31. Defaults to mqttv311."]),
    ("-V", "r", ["specify the version of the MQTT protocol to use when connecting.",
                 "Can be mqttv5, mqttv311 or mqttv31. Defaults to 5."]),
    ("-W", "s", ["Specifies a timeout in seconds how long to process incoming MQTT messages."]),
    ("-W", "r", ["Specifies a timeout in seconds how long to wait for a response."]),
    ("-x", "psr", _EXPIRY),
    ("--help", "psr", ["display this message."]),
    ("--version", "psr", ["print the version and exit."]),
    ("--nodelay", "psr", ["disable Nagle's algorithm, to reduce socket sending latency at the possible",
                          "expense of more packets being sent."]),
    ("--pretty", "sr", ["print formatted output rather than minimised output when using the",
                        "JSON output format option."]),
    ("--quiet", "psr", ["don't print error messages."]),
    ("--random-filter", "s", ["only print a percentage of received messages. Set to 100 to have all",
                              "messages printed, 50.0 to have half of the messages received on average",
                              "printed, and so on."]),
    ("--repeat", "p", ["if publish mode is -f, -m, or -s, then repeat the publish N times."]),
    ("--repeat-delay", "p", ["if using --repeat, wait time seconds between publishes. Defaults to 0."]),
    ("--retain-as-published", "sr", ["ask the broker to keep the retain flag of forwarded messages (MQTT v5)."]),
    ("--retained-only", "s", ["only handle messages with the retained flag set, and exit when the",
                              "first non-retained message is received."]),
    ("--remove-retained", "s", ["send a message to the server to clear any received retained messages",
                                "Use -T to filter out messages you do not want to be cleared."]),
    ("--unix", "psr", ["connect to a broker through a unix domain socket instead of a TCP socket,",
                       "e.g. /tmp/mosquitto.sock"]),
    ("--will-payload", "psr", ["payload for the client Will, which is sent by the broker in case of",
                               "unexpected disconnection. If not given and will-topic is set, a zero",
                               "length message will be sent."]),
    ("--will-qos", "psr", ["QoS level for the client Will."]),
    ("--will-retain", "psr", ["if given, make the client Will retained."]),
    ("--will-topic", "psr", ["the topic on which to publish the client Will."]),
    ("--cafile", "psr", ["path to a file containing trusted CA certificates to enable encrypted",
                         "communication."]),
    ("--capath", "psr", ["path to a directory containing trusted CA certificates to enable encrypted",
                         "communication."]),
    ("--cert", "psr", ["client certificate for authentication, if required by server."]),
    ("--key", "psr", ["client private key for authentication, if required by server."]),
    ("--keyform", "psr", ["keyfile type; only \"pem\" is supported."]),
    ("--ciphers", "psr", ["openssl compatible list of TLS ciphers to support."]),
    ("--tls-alpn", "psr", ["TLS application layer protocol to negotiate."]),
    ("--tls-version", "psr", ["TLS protocol version, can be one of tlsv1.3 tlsv1.2 or tlsv1.1.",
                              "Defaults to tlsv1.2 if available."]),
    ("--insecure", "psr", _INSECURE),
    ("--tls-use-os-certs", "psr", ["Load and trust OS provided CA certificates."]),
]
_LETTER = {PUB: "p", SUB: "s", RR: "r"}


def version_text(kind: str) -> str:
    return f"{PROGRAMS[kind]} version {__version__} running on mqttgateway {__version__}.\n"


def usage_text(kind: str) -> str:
    """The whole ``--help`` text for one program."""
    program = PROGRAMS[kind]
    lines = [line.format(p=program) for line in _INTRO[kind]]
    lines += [version_text(kind).rstrip("\n"), ""]
    indent = " " * (len("Usage: ") + len(program) + 1)
    synopsis = _SYNOPSIS[kind]
    lines.append(f"Usage: {program} {synopsis[0]}")
    lines += [indent + line for line in synopsis[1:]]
    lines += [f"       {program} --help", ""]
    for flag, programs, description in _OPTIONS:
        if _LETTER[kind] not in programs:
            continue
        lines.append(f" {flag} : {description[0]}")
        pad = " " * (len(flag) + 4)
        lines += [pad + line for line in description[1:]]
    lines += ["", "Flags, output formats and exit statuses follow Mosquitto's clients.", ""]
    return "\n".join(lines) + "\n"
