"""``pid_file``: the process id in a file from startup to a clean exit, as Mosquitto.

twistd has a pid file of its own (``--pidfile``, which ``mqttgateway`` turns off):
the two are independent, and when both name one file twistd keeps it. twistd writes
its file just before the service starts, so a file that already holds this process's
id is twistd's, and the gateway neither rewrites nor removes it.
"""

from __future__ import annotations

import os

__all__ = ["PidFile"]


def _holds(path: str, pid: int) -> bool:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip() == str(pid)
    except OSError:
        return False


class PidFile:
    """The file ``pid_file`` names (None: no file)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.owned = False

    def write(self) -> None:
        """Write this process's id; raises ``OSError`` when the file cannot be written."""
        if not self.path or _holds(self.path, os.getpid()):
            return
        with open(self.path, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
        self.owned = True

    def remove(self) -> None:
        """Remove the file if this process wrote it and it still names this process.

        Failure is ignored, as Mosquitto does: after a privilege drop the directory may
        no longer be writable."""
        path = self.path
        if not self.owned or path is None:
            return
        self.owned = False
        if _holds(path, os.getpid()):
            try:
                os.unlink(path)
            except OSError:
                pass
