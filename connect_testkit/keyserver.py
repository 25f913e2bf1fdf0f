"""A real HTTP key server on 127.0.0.1 that serves install keys by kid, and misbehaves on demand.

It also serves a Forge-style JWKS at ``/.well-known/jwks.json`` (``jwks_url``): keys added with
``publish_jwk``; the same behaviours apply to it (``kid_behaviours[JWKS_NAME]`` for it alone).

Fault injection (404s, 5xx, HTML, redirects, slow or hanging answers, oversized bodies) is what
tests of key fetching need; it lives here, in the test kit, never on the server's import path.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from connect_testkit.signing import public_jwk, public_pem

JWKS_NAME = ".well-known/jwks.json"

BEHAVIOURS = (
    "normal",  # 200 with the PEM, 404 for an unknown kid
    "not_found",  # 404 for everything
    "forbidden",  # 403 with a small HTML page (a CDN's answer for an object it does not have)
    "gone",  # 410
    "slow_not_found",  # 404 after 0.2 s, as a distant CDN answers for a kid it lacks
    "error",  # 500
    "html",  # 200 with an HTML page
    "redirect",  # 302 to another path on this server
    "slow_body",  # headers at once, then the body one byte every 0.5 s
    "slow_headers",  # the status line and headers one byte every 0.5 s
    "hang",  # accept, then say nothing
    "oversize",  # 200 with 64 KB
)


@dataclass
class KeyServer:
    """A real HTTP key server on 127.0.0.1 serving ``/<kid>``; counts and records requests."""

    keys: dict[str, bytes] = field(default_factory=dict)
    jwks: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid -> public JWK
    behaviour: str = "normal"
    # Per-kid behaviour, overriding ``behaviour`` for that kid only.
    kid_behaviours: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> KeyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def jwks_url(self) -> str:
        """The JWKS's URL (for ``FORGE_JWKS_URL``)."""
        return f"{self.url}/{JWKS_NAME}"

    def publish(self, kid: str, private_key: rsa.RSAPrivateKey) -> None:
        with self._lock:
            self.keys[kid] = public_pem(private_key)

    def publish_jwk(self, kid: str, private_key: rsa.RSAPrivateKey, **members: Any) -> None:
        """Add the public half of ``private_key`` to the JWKS under ``kid`` (``alg`` RS256 and
        ``use`` sig, as Forge's; ``members`` override or add members, None removes one)."""
        jwk = {**public_jwk(private_key, kid), **members}
        with self._lock:
            self.jwks[kid] = {k: v for k, v in jwk.items() if v is not None}

    def jwks_document(self) -> bytes:
        with self._lock:
            return json.dumps({"keys": list(self.jwks.values())}).encode()

    def reset(self) -> None:
        with self._lock:
            self.keys.clear()
            self.jwks.clear()
            self.requests.clear()
            self.kid_behaviours.clear()
            self.behaviour = "normal"

    def record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def __enter__(self) -> KeyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler_for(server: KeyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, content_type: str = "application/x-pem-file") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def _drip(self, data: bytes) -> None:
            for byte in data:
                if server._stop.wait(0.5):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return

        def do_GET(self) -> None:
            server.record(self.path)
            kid = self.path[1:]
            behaviour = server.kid_behaviours.get(kid, server.behaviour)
            pem = server.jwks_document() if kid == JWKS_NAME else server.keys.get(kid)
            if behaviour == "not_found" or (behaviour == "normal" and pem is None):
                self._send(404, b"Not Found", "text/plain")
            elif behaviour == "slow_not_found":
                server._stop.wait(0.2)
                self._send(404, b"Not Found", "text/plain")
            elif behaviour == "gone":
                self._send(410, b"Gone", "text/plain")
            elif behaviour == "forbidden":
                self._send(403, b"<html><body><h1>403 Forbidden</h1></body></html>", "text/html")
            elif behaviour == "normal":
                self._send(
                    200, pem or b"", "application/json" if kid == JWKS_NAME else "application/x-pem-file"
                )
            elif behaviour == "error":
                self._send(500, b"Internal Server Error", "text/plain")
            elif behaviour == "html":
                self._send(200, b"<html><body>Sign in</body></html>", "text/html")
            elif behaviour == "redirect":
                self.send_response(302)
                self.send_header("Location", "/elsewhere/" + kid)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif behaviour == "oversize":
                self._send(200, b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 65536)
            elif behaviour == "slow_body":
                body = pem or b"-" * 400
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                self._drip(body)
            elif behaviour == "slow_headers":
                self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: " + b"x" * 200)
            elif behaviour == "hang":
                server._stop.wait(30)

    return Handler
