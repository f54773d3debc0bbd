"""A stand-in for the operator's webhook, for tests: a real HTTP server on loopback
that keeps every JSON body it is sent and can answer 500 a given number of times."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Receiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failing = 0  # answer 500 to this many more requests
        self.url = ""


@contextmanager
def webhook_receiver(path: str = "/hook") -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if receiver.failing > 0:
                receiver.failing -= 1
                self.send_response(500)
            else:
                receiver.received.append(body)
                self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
