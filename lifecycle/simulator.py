"""Plays Atlassian locally: signs lifecycle calls and serves install keys on loopback.

Used by the test suite's fixtures and by ``manage.py connect_simulate``; one piece of code for
both. Nothing here is used to verify requests, and the server never trusts it on its own: it
is trusted only when ``CONNECT_KEY_SERVERS`` points at a :class:`KeyServer`'s URL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lifecycle import protocol


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA private key (Atlassian's install keys are RSA)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM a key server publishes for a kid."""
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- Signing -------------------------------------------------------------------------------


def qsh_for(method: str, url: str, base_url: str = "") -> str:
    """The qsh Atlassian puts in a token for ``method url`` (url absolute or a path with query)."""
    parts = urlsplit(url)
    return protocol.query_string_hash(
        protocol.canonical_request(method, parts.path or "/", parts.query, urlsplit(base_url).path)
    )


def sign_install(
    private_key: rsa.RSAPrivateKey,
    *,
    kid: str,
    client_key: str,
    audience: str | list[str],
    method: str = "POST",
    url: str = "/lifecycle/installed",
    base_url: str = "",
    lifetime: int = 180,
    now: float | None = None,
    overrides: dict[str, Any] | None = None,
    drop: Iterable[str] = (),
    headers: dict[str, Any] | None = None,
) -> str:
    """An RS256 signed-install token as Atlassian makes it for ``installed``/``uninstalled``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": client_key,
        "sub": "557058:" + uuid.uuid4().hex,
        "aud": audience,
        "qsh": qsh_for(method, url, base_url),
        "iat": issued,
        "exp": issued + lifetime,
        "context": {},
    }
    claims.update(overrides or {})
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid, **(headers or {})})


def sign_tenant(
    shared_secret: str,
    *,
    client_key: str,
    method: str,
    url: str,
    base_url: str = "",
    lifetime: int = 180,
    now: float | None = None,
    overrides: dict[str, Any] | None = None,
    drop: Iterable[str] = (),
) -> str:
    """An HS256 token as Jira makes it for webhooks, ``enabled`` and ``disabled``."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": client_key,
        "qsh": qsh_for(method, url, base_url),
        "iat": issued,
        "exp": issued + lifetime,
    }
    claims.update(overrides or {})
    for name in drop:
        claims.pop(name, None)
    return jwt.encode(claims, shared_secret, algorithm="HS256")


# --- A key server that can misbehave on demand -----------------------------------------------

BEHAVIOURS = (
    "normal",  # 200 with the PEM, 404 for an unknown kid
    "not_found",  # 404 for everything
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
    behaviour: str = "normal"
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

    def publish(self, kid: str, private_key: rsa.RSAPrivateKey) -> None:
        with self._lock:
            self.keys[kid] = public_pem(private_key)

    def reset(self) -> None:
        with self._lock:
            self.keys.clear()
            self.requests.clear()
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
            behaviour = server.behaviour
            pem = server.keys.get(kid)
            if behaviour == "not_found" or (behaviour == "normal" and pem is None):
                self._send(404, b"Not Found", "text/plain")
            elif behaviour == "normal":
                self._send(200, pem or b"")
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
