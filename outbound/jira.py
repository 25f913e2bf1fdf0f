"""Calls from this app back into a tenant's Jira, as the app: a ``requests`` session per tenant.

Protocol facts (Atlassian, "Understanding JWT for Connect apps"): an app authenticates a REST
call with a JWT in the ``Authorization: JWT <token>`` header (Jira Cloud no longer takes it as a
``jwt`` query parameter on REST calls), signed HS256 with the tenant's sharedSecret, ``iss`` the
app's descriptor key, a short lifetime, and a ``qsh`` of that very request, its path relative to
the tenant's baseUrl. The qsh comes from ``lifecycle.protocol``: one canonical request for both
directions.

Safety: only the tenant's stored base URL is ever called (an absolute URL elsewhere is refused
before a byte leaves; redirects are not followed); every call has a timeout; only idempotent
methods are retried, on 429 and 503, after ``Retry-After`` or else ``X-RateLimit-Reset`` or a
jittered backoff, a capped number of times. The tenant's row is read for every call, so a
reinstall's new secret and a renamed site apply at once. Neither the token nor the secret is
logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from django.core.cache import cache
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, LocationParseError
from urllib3.util import parse_url
from urllib3.util.retry import Retry

from lifecycle import protocol
from lifecycle.conf import connect_settings
from tenants.models import Installation

TOKEN_LIFETIME = 180  # seconds, as Atlassian's own libraries sign
TIMEOUT = (5.0, 30.0)  # (connect, read) seconds, for every call unless the caller gives one
RETRIES = 3  # attempts after the first, for idempotent methods on 429 and 503
# Seconds: a longer Retry-After or reset is cut to this. Retries resend the first signed request,
# so every wait and read together (3 x 10 + 4 x 30 s) stays within the token's 180 s.
MAX_RETRY_WAIT = 10.0
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class JiraCallError(Exception):
    """A call into Jira that this client refused to make."""


class TenantUnavailable(JiraCallError):
    """The tenant is unknown, uninstalled (no secret) or suspended by this app's operators."""


class ForeignURL(JiraCallError):
    """An absolute URL outside the tenant's base URL (scheme, host and port)."""


def app_token(method: str, url: str, base_url: str, shared_secret: str, *, now: float | None = None) -> str:
    """The JWT for one call as the app: HS256, ``iss`` the app key, ``qsh`` of ``method url``
    (the final URL, query included) relative to ``base_url``'s path, valid ``TOKEN_LIFETIME`` s."""
    parts = urlsplit(url)
    canonical = protocol.canonical_request(method, parts.path or "/", parts.query, urlsplit(base_url).path)
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": connect_settings.APP_KEY,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME,
        "qsh": protocol.query_string_hash(canonical),
    }
    return jwt.encode(claims, shared_secret, algorithm="HS256")


_UNSAFE = re.compile(r"[\\\s\x00-\x1f\x7f]")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def site_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) as urllib3, the library that connects, reads ``url``; the port
    filled in for http and https. ``ForeignURL`` for what it cannot read or for userinfo."""
    if _UNSAFE.search(url):
        raise ForeignURL(f"{url[:200]!r} holds a backslash, whitespace or a control character.")
    try:
        parts = parse_url(url)
    except LocationParseError as exc:
        raise ForeignURL(f"{url[:200]!r} is not a URL.") from exc
    scheme, host = (parts.scheme or "").lower(), (parts.host or "").lower()
    if parts.auth is not None or scheme not in _DEFAULT_PORTS or not host:
        raise ForeignURL(f"{url[:200]!r} is not a plain http(s) URL.")
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]


def check_on_site(url: str, base_url: str) -> None:
    """``ForeignURL`` unless ``url`` is on the tenant's site: the scheme, host and port of
    ``base_url``."""
    if site_of(url) != site_of(base_url):
        raise ForeignURL(f"{url[:200]!r} is not on the tenant's site {base_url!r}.")


class ConnectJWTAuth(requests.auth.AuthBase):
    """A ``requests`` auth hook: signs the prepared request (its final URL) for one tenant."""

    def __init__(self, base_url: str, shared_secret: str) -> None:
        self.base_url = base_url
        self._secret = shared_secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.url is None or request.method is None:
            raise JiraCallError("a request without a URL or method cannot be signed")
        check_on_site(request.url, self.base_url)  # the final URL, as it will be sent
        request.headers["Authorization"] = "JWT " + app_token(
            request.method, request.url, self.base_url, self._secret
        )
        return request

    def __repr__(self) -> str:
        return f"<ConnectJWTAuth for {self.base_url}>"  # never the secret


class JiraRetry(Retry):
    """urllib3's retry with Jira's rate-limit header: without ``Retry-After``, wait until
    ``X-RateLimit-Reset`` (ISO 8601; Jira Cloud sends 429 without Retry-After at times); every
    wait capped at ``MAX_RETRY_WAIT``."""

    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def get_retry_after(self, response: Any) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:  # "Retry-After: soon": fall back to the reset time or the backoff
            seconds = None
        if seconds is None:
            reset = response.headers.get("X-RateLimit-Reset")
            if reset:
                try:
                    moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
                    seconds = max(moment.timestamp() - time.time(), 0.0)
                except ValueError:
                    seconds = None
        return None if seconds is None else min(seconds, MAX_RETRY_WAIT)


def _retry() -> JiraRetry:
    return JiraRetry(
        total=RETRIES,
        connect=False,  # a transport failure is raised at once, as requests' Timeout or ConnectionError
        read=False,
        status=RETRIES,
        status_forcelist=(429, 503),
        allowed_methods=IDEMPOTENT,
        backoff_factor=0.5,
        backoff_jitter=0.5,
        backoff_max=MAX_RETRY_WAIT,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


# --- As a user: OAuth 2.0 JWT bearer grant (Atlassian, "User impersonation for Connect apps") ---

OAUTH_AUDIENCE = "https://oauth-2-authorization-server.services.atlassian.com"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 60  # seconds
TOKEN_MARGIN = 60  # seconds: a cached access token is dropped this long before it expires
DEFAULT_USER_SCOPES = ("READ", "ACT_AS_USER")
# Concurrent first calls for one user wait for one grant: the fetch holds a cache lock for at most
# GRANT_LOCK_TTL s (its own timeouts), the others poll every GRANT_POLL s for up to GRANT_WAIT s
# (then ask on their own: a waiter's worst case stays within gunicorn's 30 s timeout only with a
# token endpoint that answers, which Atlassian's does in well under a second). A failed or
# uncacheable grant is marked for GRANT_MARKER_TTL s, so that waiters do not queue behind it.
GRANT_LOCK_TTL = int(sum(TIMEOUT))
GRANT_WAIT = 5.0
GRANT_POLL = 0.05
GRANT_MARKER_TTL = 5


def token_url(installation: Installation) -> str:
    """Where the user grant goes: Atlassian's authorization server (``CONNECT["OAUTH_TOKEN_URL"]``),
    or, for a tenant on the simulator's fake Jira only, that fake's token endpoint."""
    from lifecycle.verification import on_simulated_jira

    if on_simulated_jira(installation.base_url):
        return f"{connect_settings.SIMULATED_JIRA}/oauth2/token"
    return connect_settings.OAUTH_TOKEN_URL


def user_assertion(installation: Installation, account_id: str, *, now: float | None = None) -> str:
    """The grant's assertion: HS256 with the tenant's secret; ``iss`` the install's
    ``oauthClientId``, ``sub`` the user's accountId, ``tnt`` the tenant's base URL."""
    if not installation.oauth_client_id:
        raise TenantUnavailable(f"The tenant {installation.client_key!r} gave no oauthClientId at install.")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": f"urn:atlassian:connect:clientid:{installation.oauth_client_id}",
        "sub": f"urn:atlassian:connect:useraccountid:{account_id}",
        "tnt": installation.base_url,
        "aud": OAUTH_AUDIENCE,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME,
    }
    return jwt.encode(claims, installation.reveal_shared_secret(), algorithm="HS256")


def _user_token_key(installation: Installation, account_id: str, scopes: tuple[str, ...]) -> str:
    """One tenant, site, OAuth client, secret (its rotation time), user and scopes: one key."""
    parts = [
        installation.client_key,
        installation.base_url,
        installation.oauth_client_id,
        str(installation.secret_updated_at),
        account_id,
        list(scopes),
    ]
    return "connect:usertoken:" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def forget_user_token(installation: Installation, account_id: str, scopes: tuple[str, ...]) -> None:
    """Drop a cached access token (Jira answered 401 with it: revoked or expired early)."""
    cache.delete(_user_token_key(installation, account_id, scopes))


def user_token(
    installation: Installation, account_id: str, scopes: tuple[str, ...] = DEFAULT_USER_SCOPES
) -> str:
    """An access token to act as ``account_id`` on the tenant's site, from the Django cache
    until ``TOKEN_MARGIN`` seconds before it expires, else from the token endpoint
    (``CONNECT["OAUTH_TOKEN_URL"]``). ``JiraCallError`` when the endpoint refuses the grant."""
    key = _user_token_key(installation, account_id, scopes)
    cached = cache.get(key)
    if isinstance(cached, str):
        return cached
    # One grant at a time per key, across workers (cache.add is atomic on Redis and in one
    # process): a page that fires eight calls at once costs the token endpoint one grant. The
    # owner leaves a marker when its grant fails or gives a token too short-lived to cache, so
    # that waiters stop waiting (and fail, or ask on their own) instead of queueing behind it.
    fetching, outcome = key + ":fetching", key + ":outcome"
    mine = secrets.token_hex(8)
    owner = cache.add(fetching, mine, GRANT_LOCK_TTL)
    deadline = time.monotonic() + GRANT_WAIT
    while not owner and time.monotonic() < deadline:
        time.sleep(GRANT_POLL)
        cached, marker = (lambda found: (found.get(key), found.get(outcome)))(cache.get_many([key, outcome]))
        if isinstance(cached, str):
            return cached
        if marker == "refused":
            raise JiraCallError("The token endpoint refused the user grant (for a concurrent call).")
        if marker == "uncacheable":
            break  # each caller needs a token of its own: no point in waiting for one
        owner = cache.add(fetching, mine, GRANT_LOCK_TTL)  # the other fetch ended without a token
    # Past GRANT_WAIT behind a stuck fetch, this caller asks for its own token.
    try:
        cached = cache.get(key)  # set by a fetch that ended between the first look and the lock
        if isinstance(cached, str):
            return cached
        try:
            token, cacheable = _grant(installation, account_id, scopes, key)
        except JiraCallError:
            if owner:
                cache.set(outcome, "refused", GRANT_MARKER_TTL)
            raise
        if owner and not cacheable:
            cache.set(outcome, "uncacheable", GRANT_MARKER_TTL)
        return token
    finally:
        if owner and cache.get(fetching) == mine:  # never another owner's lock (ours expired)
            cache.delete(fetching)


def _grant(
    installation: Installation, account_id: str, scopes: tuple[str, ...], key: str
) -> tuple[str, bool]:
    """The token endpoint's access token for one user, cached under ``key`` when it lives long
    enough (see user_token); (token, cached)."""
    session = requests.Session()
    session.trust_env = False  # no proxies or netrc credentials from the environment
    response = session.post(
        token_url(installation),
        data={
            "grant_type": JWT_BEARER_GRANT,
            "assertion": user_assertion(installation, account_id),
            "scope": " ".join(scopes),
        },
        timeout=TIMEOUT,
        allow_redirects=False,
    )
    if response.status_code != 200:
        raise JiraCallError(f"The token endpoint refused the user grant: HTTP {response.status_code}.")
    try:
        answer = response.json()
    except ValueError as exc:
        raise JiraCallError("The token endpoint's answer is not JSON.") from exc
    token, lifetime = (
        (answer.get("access_token"), answer.get("expires_in")) if isinstance(answer, dict) else (None, None)
    )
    if not isinstance(token, str) or not isinstance(lifetime, int):
        raise JiraCallError("The token endpoint's answer has no access_token and expires_in.")
    if lifetime > TOKEN_MARGIN:
        cache.set(key, token, lifetime - TOKEN_MARGIN)
        return token, True
    return token, False


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <access token>`` (a user's, from :func:`user_token`)."""

    def __init__(self, token: str, base_url: str) -> None:
        self._token = token
        self.base_url = base_url

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        check_on_site(request.url or "", self.base_url)  # the final URL, as it will be sent
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "<BearerAuth>"  # never the token


def url_below(base_url: str, path_or_url: str) -> str:
    """An absolute URL below ``base_url``: a path is appended to it (its own path prefix
    kept); an absolute URL must share its scheme, host and port, else :class:`ForeignURL`."""
    if _UNSAFE.search(path_or_url):
        raise ForeignURL(f"{path_or_url[:200]!r} holds a backslash, whitespace or a control character.")
    if "://" in path_or_url.split("?", 1)[0] or path_or_url.startswith("//"):
        check_on_site(path_or_url, base_url)
        url = path_or_url
    elif path_or_url.startswith("/"):
        url = base_url.rstrip("/") + path_or_url  # never urljoin: it would follow "/https://..."
    else:
        raise JiraCallError(f"give a path starting with '/', not {path_or_url[:200]!r}")
    if ".." in urlsplit(url).path.split("/"):
        raise ForeignURL(f"{path_or_url[:200]!r} climbs out of the site's path with '..'.")
    check_on_site(url, base_url)
    return url


class RequestVerbs:
    """``get``/``post``/``put``/``delete`` over a client's ``request(method, path_or_url, **kwargs)``."""

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        raise NotImplementedError

    def get(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path_or_url, **kwargs)

    def post(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path_or_url, **kwargs)

    def put(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path_or_url, **kwargs)

    def delete(self, path_or_url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path_or_url, **kwargs)


class JiraClient(RequestVerbs):
    """Jira's REST API for one tenant, as the app.

    ``JiraClient(client_key).get("/rest/api/3/myself")`` returns a ``requests.Response``; any
    ``requests`` keyword argument passes through (``params``, ``json``, ``timeout`` ...), except
    ``auth`` and ``allow_redirects``, which the client owns. Raises :class:`TenantUnavailable`
    or :class:`ForeignURL` before sending, and ``requests`` exceptions for transport failures.
    """

    def __init__(
        self,
        client_key: str,
        *,
        account_id: str | None = None,
        scopes: tuple[str, ...] = DEFAULT_USER_SCOPES,
        session: requests.Session | None = None,
    ) -> None:
        self.client_key = client_key
        self.account_id = account_id
        self.scopes = scopes
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxies or netrc credentials from the environment
        adapter = HTTPAdapter(max_retries=_retry())
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def _tenant(self) -> Installation:
        installation = Installation.objects.filter(client_key=self.client_key).first()
        if installation is None:
            raise TenantUnavailable(f"No tenant has clientKey {self.client_key!r}.")
        if not installation.is_installed or not installation.has_secret:
            raise TenantUnavailable(f"The tenant {self.client_key!r} has uninstalled the app.")
        if installation.suspended:
            raise TenantUnavailable(f"The tenant {self.client_key!r} is suspended by this app's operators.")
        return installation

    def url_for(self, base_url: str, path_or_url: str) -> str:
        """:func:`url_below`."""
        return url_below(base_url, path_or_url)

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """One call, signed for the tenant as it is now (its current secret and base URL)."""
        for owned in ("auth", "allow_redirects"):
            if owned in kwargs:
                raise JiraCallError(f"{owned!r} is set by the client")
        installation = self._tenant()
        url = self.url_for(installation.base_url, path_or_url)
        auth: requests.auth.AuthBase
        if self.account_id is None:
            auth = ConnectJWTAuth(installation.base_url, installation.reveal_shared_secret())
        else:
            auth = BearerAuth(user_token(installation, self.account_id, self.scopes), installation.base_url)
        kwargs.setdefault("timeout", TIMEOUT)
        response = self.session.request(method.upper(), url, auth=auth, allow_redirects=False, **kwargs)
        if self.account_id is not None and response.status_code == 401:
            forget_user_token(installation, self.account_id, self.scopes)  # the next call gets a new one
        return response


def as_app(client_key: str) -> JiraClient:
    """The client for ``client_key``'s Jira, as the app."""
    return JiraClient(client_key)


def as_user(client_key: str, account_id: str, scopes: tuple[str, ...] = DEFAULT_USER_SCOPES) -> JiraClient:
    """The client for ``client_key``'s Jira, acting as the user ``account_id`` (needs the
    ``ACT_AS_USER`` scope in the descriptor)."""
    return JiraClient(client_key, account_id=account_id, scopes=scopes)


__all__ = [
    "ConnectJWTAuth",
    "ForeignURL",
    "JiraCallError",
    "JiraClient",
    "TenantUnavailable",
    "app_token",
    "as_app",
    "as_user",
    "url_below",
]
