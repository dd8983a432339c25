"""A tiny HTTP server on a loopback address, for the tests of fetching images from a URL.

No test reaches the network: `serve(routes, host=...)` answers each path from `routes` with
(status, headers, body), or with a callable for slow or streaming answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, dict[str, str], bytes]
Route = Answer | Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `routes` on `host` (any free port); yields the base URL, e.g. http://127.0.0.1:5123."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
            elif callable(route):
                route(self)
            else:
                status, headers, body = route
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    server.requests_seen = seen  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
