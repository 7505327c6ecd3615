"""The ``mqttgateway`` command: Mosquitto's flags, the same service as ``twistd mqttgateway``."""

from __future__ import annotations

import sys

from twisted.python import usage

from gateway.service import Options


class CommandOptions(Options):
    """``-c``, ``-p``, ``-v`` as the twistd plugin, plus ``-d`` to run in the background."""

    synopsis = "Usage: mqttgateway [-c FILE] [-p PORT] [-v] [-d]"
    optFlags = Options.optFlags + [["daemon", "d", "run in the background"]]


def twistd_arguments(options: CommandOptions) -> list[str]:
    """Translate our flags into a twistd command line for the same plugin."""
    args = ["--pidfile="]
    if not options["daemon"]:
        args.append("--nodaemon")
    args.append("mqttgateway")
    if options["config"]:
        args += ["--config", options["config"]]
    if options["port"] is not None:
        args += ["--port", str(options["port"])]
    if options["verbose"]:
        args.append("--verbose")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    options = CommandOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"mqttgateway: {e}\n{options}\n")
        raise SystemExit(2) from None

    from gateway.reactor import install_asyncio_reactor

    install_asyncio_reactor()
    from twisted.scripts.twistd import run

    sys.argv = ["mqttgateway", *twistd_arguments(options)]
    run()


if __name__ == "__main__":
    main()
