"""One API URL for several simulators, one enterprise account each: a request under
/enterprise-accounts/{name or id} goes to that account's simulator (anything else to the
first). It lets a benchmark poll ten accounts in one run, as a company with ten would."""

from __future__ import annotations

import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from heroku_audit_trail.simulator import Simulator


class AccountRouter(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, simulators: list[Simulator]) -> None:
        super().__init__(("127.0.0.1", 0), _Route)
        self.simulators = simulators
        self.by_account = {
            key: sim
            for sim in simulators
            for key in (sim.config.enterprise_name, sim.config.enterprise_id)
        }
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def __enter__(self) -> AccountRouter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that left (a run stopped with requests in flight) is routine.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Route(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes (see simulator._Handler)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        assert isinstance(self.server, AccountRouter)
        segments = urlsplit(self.path).path.split("/")
        target = self.server.simulators[0]
        if len(segments) > 2 and segments[1] == "enterprise-accounts":
            target = self.server.by_account.get(unquote(segments[2]), target)
        upstream = urlsplit(target.url)
        connection = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=30)
        try:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in ("host", "connection")
            }
            connection.request("GET", self.path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        self.send_response_only(response.status)  # the simulator's own Date, not this one's
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
