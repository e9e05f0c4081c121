"""A fault-injecting HTTP proxy to put in front of gcp-storage-emulator in the pusher tests.

It is how the tests produce real failures (HTTP 503 then success, a 403 in the middle of a push)
without touching our code: google-cloud-storage talks to the proxy through ``STORAGE_EMULATOR_HOST``, and
the proxy forwards every request it does not fail to the emulator.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


BUCKET = "firmware"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Fault:
    method: str
    path_re: str
    status: int
    skip: int = 0  # let this many matching requests through first
    times: int = 1  # then fail this many
    served: int = 0  # failures actually returned


class FaultProxy:
    """Forwards HTTP requests to ``target_port``; requests matching a Fault get its status instead."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.corrupt_downloads: str | None = None  # regex: flip a byte of matching media downloads
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path))
                for fault in proxy.faults:
                    if fault.method == self.command and re.search(fault.path_re, self.path):
                        if fault.skip > 0:
                            fault.skip -= 1
                        elif fault.served < fault.times:
                            fault.served += 1
                            payload = json.dumps(
                                {"error": {"code": fault.status, "message": "injected"}}
                            ).encode()
                            self.send_response(fault.status)
                            self.send_header("Content-Type", "application/json")
                            self.send_header("Content-Length", str(len(payload)))
                            self.end_headers()
                            self.wfile.write(payload)
                            return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                drop = {"transfer-encoding", "connection", "content-length"}
                if (
                    proxy.corrupt_downloads
                    and "/download/" in self.path
                    and data
                    and re.search(proxy.corrupt_downloads, self.path)
                ):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                    # A store that corrupts silently: no MD5 header, so only our sha256 check can tell.
                    drop.add("x-goog-hash")
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in drop:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def fail(self, method: str, path_re: str, status: int, skip: int = 0, times: int = 1) -> Fault:
        fault = Fault(method, path_re, status, skip, times)
        self.faults.append(fault)
        return fault
