"""Send each answer in one piece: waitress sends a response's header and body separately.

waitress's task writes the status line and headers with one ``send`` and then the body with
another (it sets ``TCP_NODELAY``, so each is a TCP segment of its own). For an API whose
answers are a few hundred bytes, that doubles the system calls and, worse on a small machine,
the wake-ups of the client, which reads the header, then waits again for the body. A poll of
``GET /v1/jobs/{id}`` is exactly such an answer, and pollers are the bulk of our traffic.

This task builds the header as waitress does and hands it over together with the body's first
chunk when that chunk is all or the start of a body of known length (what Flask gives for
every JSON answer). Anything else (chunked bodies, no body, HEAD, a first chunk longer than
its Content-Length, every later chunk) goes through waitress's own code unchanged.
"""

from __future__ import annotations

from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask


class OneSendTask(WSGITask):  # type: ignore[misc]
    """A WSGI task whose header leaves with the first chunk of the body."""

    wrote_header: bool  # waitress's (untyped) own attributes, as this class uses them
    content_length: int | None
    content_bytes_written: int

    def write(self, data: bytes) -> None:
        if self.wrote_header or not data or not self.complete:
            super().write(data)  # the body's later chunks, and waitress's own errors
            return
        header: bytes = self.build_response_header()
        length = self.content_length
        if (
            self.has_body
            and not self.chunked_response
            and length is not None
            and len(data) <= length
        ):
            whole = header + data  # fails on a non-bytes chunk before anything is sent
            self.channel.write_soon(whole)
            self.wrote_header = True
            self.content_bytes_written += len(data)
            return
        self.channel.write_soon(header)
        self.wrote_header = True
        super().write(data)  # the header is out: waitress handles the body as it would


class OneSendChannel(HTTPChannel):  # type: ignore[misc]
    """An HTTP channel whose tasks send each answer whole."""

    task_class = OneSendTask


def send_answers_whole(server: Any) -> None:
    """Make a waitress server (from ``create_server``) send header and body together.

    ``create_server`` gives one listener, or several in a ``MultiSocketServer`` (a host name
    with more than one address): each gets the channel.
    """
    listeners = [server] if isinstance(server, BaseWSGIServer) else list(server.map.values())
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = OneSendChannel
