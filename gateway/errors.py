"""Exceptions shared across the package; each protocol error carries its wire code."""


class GatewayError(Exception):
    """Base class for every error the gateway raises on purpose."""


class StartupFailed(GatewayError):
    """Startup stopped, and the reason was already logged and printed.

    An exception rather than ``SystemExit``: under ``twistd``/``mqttgateway -d`` the
    parent process waits for the daemon to report an ``Exception``, and would wait
    forever for one that ends with ``SystemExit``."""


class ConfigError(GatewayError):
    """A configuration problem, reported as ``file:line: key: reason``."""

    def __init__(self, reason: str, path: str = "", line: int = 0, key: str = "") -> None:
        self.reason = reason
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.reason}"


class StoreError(GatewayError):
    """A persistence file that cannot be used, reported as ``path: what is wrong``."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def read_file(path: str, what: str) -> bytes:
    """Read a file a config key names; an unreadable one is a ``ConfigError`` at line 0,
    which the caller may place at the key's own config line."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what}: {e.strerror}", path, 0) from None
