"""Static files from a directory (``http_dir``), as Mosquitto's http_api serves them.

A request path maps to a file under the directory; a path ending in ``/`` to its
``index.html``. The resolved path (symbolic links followed) must stay inside the
directory, and must be a regular file: anything else is "not found", so nothing
outside ``http_dir`` and no directory listing is ever shown. Any listener that serves
files (``protocol http_api``, later ``websockets``) can use ``resolve`` or
``DirectoryFiles``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote

from twisted.web import pages, resource, static

__all__ = ["DirectoryFiles", "resolve", "serve_file"]


def resolve(http_dir: str, path: str) -> str | None:
    """The file that URL path ``path`` (already percent-decoded) names under
    ``http_dir``, or None."""
    if "\x00" in path:
        return None
    root = os.path.realpath(http_dir)
    relative = path.lstrip("/")
    if path.endswith("/") or not relative:
        relative = relative + "index.html"
    candidate = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, candidate]) != root or not os.path.isfile(candidate):
        return None
    return candidate


def serve_file(request: Any, filename: str) -> Any:
    """Render ``filename`` with twisted.web (content type, Range, HEAD, streaming)."""
    return static.File(filename).render(request)


class DirectoryFiles(resource.Resource):
    """A leaf resource serving ``http_dir`` without any access control of its own."""

    isLeaf = True

    def __init__(self, http_dir: str) -> None:
        super().__init__()
        self.http_dir = http_dir

    def render_GET(self, request: Any) -> Any:
        filename = resolve(self.http_dir, unquote(request.path.decode("latin-1")))
        if filename is None:
            return pages.notFound("Not found", "Not found.").render(request)
        return serve_file(request, filename)
