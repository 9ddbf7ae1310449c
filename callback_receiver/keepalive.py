"""Keep connections open after 204 answers (a waitress 3.0 quirk, worked around here).

waitress closes an HTTP/1.1 connection after any response without ``Content-Length``, and
it never sends one for 204 and 304, which have no body by definition (RFC 9110 8.6). Every
webhook answered 204 would then cost the sender a new TCP connection. This channel's tasks
skip that one needless close; every other reason to close (``Connection: close``, HTTP/1.0,
errors) is untouched.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import WSGITask


class _BodylessKeepAliveTask(WSGITask):  # type: ignore[misc]
    _keep_open = False

    def build_response_header(self) -> bytes:
        asked_close = self.request.headers.get("CONNECTION", "").lower() == "close"
        self._keep_open = not self.has_body and self.version == "1.1" and not asked_close
        try:
            return super().build_response_header()  # type: ignore[no-any-return]
        finally:
            self._keep_open = False

    def set_close_on_finish(self) -> None:
        if not self._keep_open:
            super().set_close_on_finish()


class _Channel(HTTPChannel):  # type: ignore[misc]
    task_class = _BodylessKeepAliveTask


def keep_alive_after_204(server: Any) -> None:
    """Make a waitress server (from ``create_server``) keep connections after 204/304."""
    server.channel_class = _Channel
