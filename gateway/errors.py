"""Exceptions shared across the package; each protocol error carries its wire code."""


class GatewayError(Exception):
    """Base class for every error the gateway raises on purpose."""


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
