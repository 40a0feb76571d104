"""A real S3 endpoint for tests: moto's server mode on 127.0.0.1, plus a fault-injecting HTTP proxy.

``MotoS3`` starts ``moto.server.ThreadedMotoServer`` on a free port of 127.0.0.1 and gives an
``endpoint_url`` that boto3 talks to over HTTP (the real S3 wire protocol, signatures included).

``FaultProxy`` is a tiny forwarding HTTP proxy in front of it: every request is forwarded unchanged to the
upstream endpoint, except that the first ``n`` requests whose path ends with a configured suffix are answered
with an S3 error instead (503 ``SlowDown`` by default, or 500 / 403). It counts requests per (method, path), so a test can assert that a
rerun issued no GET. Both bind 127.0.0.1 only and are stopped by the test (context managers).
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from moto.server import ThreadedMotoServer

REGION = "us-east-1"


class MotoS3:
    """moto S3 server on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    def __enter__(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def client(self, endpoint_url: str | None = None) -> Any:
        """A boto3 S3 client for this server (dummy credentials; moto does not check them)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=REGION,
        )

    def reset(self) -> None:
        """Delete every bucket and object (moto's reset endpoint), so tests sharing the server start clean."""
        import urllib.request

        req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


_ERRORS = {
    503: ("Service Unavailable", "SlowDown", "Please reduce your request rate"),
    500: ("Internal Server Error", "InternalError", "We encountered an internal error"),
    403: ("Forbidden", "AccessDenied", "Access Denied"),
}


def _error_body(status: int) -> bytes:
    _, code, message = _ERRORS[status]
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message} (injected by the test proxy).</Message></Error>"
    ).encode()


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
}


class FaultProxy:
    """Forwarding HTTP proxy that fails the first N requests for chosen paths with an S3 error.

    Args:
        upstream: ``http://host:port`` of the real endpoint.
        fail_first: ``{path suffix: n}``: the first ``n`` requests whose path ends with the suffix get an error.
        status: the injected status: 503 (``SlowDown``, default), 500 (``InternalError``) or 403
            (``AccessDenied``).
    """

    def __init__(self, upstream: str, fail_first: dict[str, int] | None = None, status: int = 503) -> None:
        if status not in _ERRORS:
            raise ValueError(f"status must be one of {sorted(_ERRORS)}, not {status}")
        self.status = status
        self.upstream = urlsplit(upstream)
        self.remaining = dict(fail_first or {})
        self.requests: Counter[tuple[str, str]] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path.split("?", 1)[0]
                with proxy._lock:
                    proxy.requests[(self.command, path)] += 1
                    fail = next((s for s, n in proxy.remaining.items() if n > 0 and path.endswith(s)), None)
                    if fail is not None:
                        proxy.remaining[fail] -= 1
                        proxy.injected[fail] += 1
                if fail is not None:
                    body = _error_body(proxy.status)
                    self.send_response(proxy.status, _ERRORS[proxy.status][0])
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    if self.command == "HEAD":
                        self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"

    def count(self, method: str, path_suffix: str = "") -> int:
        """How many ``method`` requests reached the proxy for paths ending in ``path_suffix``."""
        with self._lock:
            return sum(n for (m, p), n in self.requests.items() if m == method and p.endswith(path_suffix))

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
