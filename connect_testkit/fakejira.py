"""A loopback fake Jira that checks an app's calls the way Jira Cloud does.

Every request must carry ``Authorization: JWT <token>``: HS256 with the tenant's sharedSecret,
``iss`` the app's key, not expired, and a ``qsh`` of exactly this request relative to the site's
base URL (computed by ``connect_testkit.signing``, independently of the server's own code). A
token in the ``jwt`` query parameter is refused, as Jira Cloud refuses it on REST calls. Answers
can be scripted per path (for 429, 503, slow answers); every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from connect_testkit.signing import qsh_for

OAUTH_AUDIENCE = "https://oauth-2-authorization-server.services.atlassian.com"


@dataclass
class Answer:
    """A scripted answer: status, headers, a JSON body, and a delay before it (seconds)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


@dataclass
class Seen:
    """One request as the fake saw it; ``refused`` is why it was refused ("" if accepted)."""

    method: str
    path: str
    query: str
    claims: dict[str, Any]
    refused: str


class FakeJira:
    """Jira on ``http://127.0.0.1:<port><path_prefix>`` for one app key and one sharedSecret
    (``port`` 0: any free port; ``OSError`` when the port is taken).

    ``script(path, *answers)`` queues answers for a path; unscripted, ``GET /rest/api/3/myself``
    answers an account and anything else ``{"ok": true}``. Use as a context manager.
    """

    def __init__(
        self,
        app_key: str,
        shared_secret: str,
        path_prefix: str = "",
        oauth_client_id: str = "oauth-1",
        port: int = 0,
    ) -> None:
        self.app_key = app_key
        self.shared_secret = shared_secret
        self.path_prefix = path_prefix.rstrip("/")
        self.oauth_client_id = oauth_client_id
        self.seen: list[Seen] = []
        self.user_tokens: dict[str, str] = {}  # access token -> accountId, as the fake issued them
        self.grants: list[dict[str, Any]] = []  # the assertions presented to the token endpoint
        self.grant_delay = 0.0  # seconds the token endpoint takes to answer
        self._scripts: dict[str, deque[Answer]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def token_url(self) -> str:
        """The fake authorization server's token endpoint (settings.CONNECT["OAUTH_TOKEN_URL"])."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/oauth2/token"

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """The JWT bearer grant as Atlassian's authorization server checks it (user impersonation)."""
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                (form.get("assertion") or [""])[0],
                self.shared_secret,
                algorithms=["HS256"],
                audience=OAUTH_AUDIENCE,
                options={"require": ["iss", "sub", "tnt", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as exc:
            return 401, {"error": "invalid_grant", "error_description": type(exc).__name__}
        self.grants.append(claims)
        if (
            claims["iss"] != f"urn:atlassian:connect:clientid:{self.oauth_client_id}"
            or claims["tnt"] != self.base_url
        ):
            return 401, {"error": "invalid_grant", "error_description": "iss or tnt"}
        prefix = "urn:atlassian:connect:useraccountid:"
        if not str(claims["sub"]).startswith(prefix):
            return 401, {"error": "invalid_grant", "error_description": "sub"}
        token = f"user-token-{len(self.grants)}"
        self.user_tokens[token] = claims["sub"][len(prefix) :]
        return 200, {"access_token": token, "expires_in": 900, "token_type": "Bearer"}

    @property
    def base_url(self) -> str:
        """The site's base URL (what the tenant's install body carries as ``baseUrl``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path_prefix}"

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(answers)

    def __enter__(self) -> FakeJira:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def check(self, method: str, target: str, authorization: str | None) -> tuple[dict[str, Any], str]:
        """(claims, why refused) for a request, as Jira checks an app's JWT."""
        parts = urlsplit(target)
        if "jwt" in parse_qs(parts.query):
            return {}, "jwt query parameter (Jira Cloud takes the token in the Authorization header)"
        if authorization and authorization.startswith("Bearer "):
            account = self.user_tokens.get(authorization[7:])
            return ({"sub": account}, "") if account else ({}, "unknown bearer token")
        if not authorization or not authorization.startswith("JWT "):
            return {}, "no Authorization: JWT header"
        try:
            claims = jwt.decode(
                authorization[4:],
                self.shared_secret,
                algorithms=["HS256"],
                options={"require": ["iss", "iat", "exp", "qsh"]},
            )
        except jwt.PyJWTError as exc:
            return {}, f"token: {type(exc).__name__}"
        if claims["iss"] != self.app_key:
            return claims, f"iss {claims['iss']!r} is not the app key"
        if claims["exp"] - claims["iat"] > 3600:
            return claims, "lifetime over an hour"
        expected = qsh_for(method, target, base_url=self.base_url)
        if claims["qsh"] != expected:
            return claims, "qsh does not match the request"
        return claims, ""

    def _answer(self, path: str, claims: dict[str, Any]) -> Answer:
        with self._lock:
            queue = self._scripts.get(path)
            if queue:
                return queue.popleft()
        if path == f"{self.path_prefix}/rest/api/3/myself":
            if "qsh" not in claims:  # a user's bearer token
                return Answer(body={"accountId": claims["sub"], "accountType": "atlassian"})
            return Answer(body={"accountId": "fake-app-account", "accountType": "app"})
        return Answer(body={"ok": True})


def _handler_for(fake: FakeJira) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            if parts.path == "/oauth2/token" and self.command == "POST":
                status, granted = fake.grant(parse_qs(data.decode()))
                answer = Answer(status, body=granted, delay=fake.grant_delay)
            else:
                claims, refused = fake.check(self.command, self.path, self.headers.get("Authorization"))
                with fake._lock:
                    fake.seen.append(Seen(self.command, parts.path, parts.query, claims, refused))
                if refused:
                    answer = Answer(401, body={"message": refused})
                else:
                    answer = fake._answer(parts.path, claims)
            if answer.delay:
                fake._stop.wait(answer.delay)
            body = b"" if answer.body is None else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (a timeout test): nothing to answer

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler


def iso_in(seconds: float) -> str:
    """An ISO 8601 UTC time ``seconds`` from now, as Jira's ``X-RateLimit-Reset`` carries it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
