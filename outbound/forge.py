"""Calls from a Forge remote call back into Atlassian's APIs, with the tokens Forge sent.

Protocol facts (Atlassian, "Forge remote essentials" and "Calling product APIs from a remote",
https://developer.atlassian.com/platform/forge/remote/): Forge sends ``x-forge-oauth-system`` (the
app's token, when the manifest enables ``appSystemToken``) and ``x-forge-oauth-user`` (the user's,
UI calls only, when ``appUserToken`` is enabled); each is sent as ``Authorization: Bearer`` to the
FIT's ``app.apiBaseUrl`` (``https://api.atlassian.com/ex/<product>/<cloudId>``) plus the product's
path (``/rest/api/3/myself``). The tokens are JWTs whose only readable claim for an app is
``exp``; they live up to 4 hours; Atlassian asks that they are never logged or shared.

Safety, as for the Connect client (``outbound.jira``): only the installation's ``apiBaseUrl`` is
called (another host is refused before a byte leaves; redirects are not followed), https unless
the host is loopback (tests), every call has a timeout, idempotent methods are retried on 429 and
503. A token is never sent once expired (``TOKEN_MARGIN`` seconds before its ``exp``), and the
tokens a process keeps (:data:`tokens`, in its memory only: never in the database, the cache or a
log, so a task worker has none) are replaced only by newer ones.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from connectsite.environment import is_loopback_host
from lifecycle.fit import ForgeToken
from lifecycle.verification import ForgeCall
from outbound.jira import (
    TIMEOUT,
    BearerAuth,
    ForeignURL,
    JiraCallError,
    RequestVerbs,
    _retry,
    site_of,
    url_below,
)
from tenants.models import ForgeInstallation

TOKEN_MARGIN = 30.0  # seconds: a token this close to its exp is not sent
MAX_TOKEN_LIFETIME = 4 * 3600 + 300  # seconds: Forge's OAuth tokens live up to 4 hours
SYSTEM, USER = "system", "user"


class ForgeTokenUnavailable(JiraCallError):
    """No unexpired token of that kind for the installation (Forge sent none, or it has expired)."""


class ForgeTokenStore:
    """The newest token of each kind (system; user per account) per Forge installation, in this
    process's memory only. Thread-safe; bounded (the oldest installations are dropped first)."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], ForgeToken] = {}

    def offer(
        self, installation_id: str, kind: str, token: ForgeToken | None, now: float | None = None
    ) -> None:
        """Keep ``token`` unless the one kept expires later: an older token never replaces a
        newer one. A token without ``exp``, or whose unverified ``exp`` lies further ahead than
        Forge's tokens live (``MAX_TOKEN_LIFETIME``), is not kept (it could never be replaced)."""
        now = time.time() if now is None else now
        if token is None or token.expires_at is None or token.expires_at > now + MAX_TOKEN_LIFETIME:
            return
        key = (installation_id, kind)
        with self._lock:
            kept = self._tokens.get(key)
            if (
                kept is not None
                and kept.usable(now, TOKEN_MARGIN)
                and (kept.expires_at or 0) > token.expires_at
            ):
                return
            self._tokens.pop(key, None)
            self._tokens[key] = token
            while len(self._tokens) > self.MAX_ENTRIES:
                self._tokens.pop(next(iter(self._tokens)))

    def get(self, installation_id: str, kind: str, now: float | None = None) -> ForgeToken | None:
        """The kept token, if it is still usable (``TOKEN_MARGIN`` s before its exp), else None."""
        now = time.time() if now is None else now
        with self._lock:
            token = self._tokens.get((installation_id, kind))
        return token if token is not None and token.usable(now, TOKEN_MARGIN) else None

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def __repr__(self) -> str:
        return f"<ForgeTokenStore of {len(self._tokens)} tokens>"  # never a token


tokens = ForgeTokenStore()


def check_api_base_url(url: str) -> str:
    """``url`` (a FIT's ``apiBaseUrl``) if it is a plain https URL (http for loopback only),
    else ``ForeignURL``."""
    scheme, host, _port = site_of(url)
    if scheme != "https" and not is_loopback_host(host):
        raise ForeignURL(f"apiBaseUrl {url[:200]!r} is not https.")
    return url.rstrip("/")


class ForgeClient(RequestVerbs):
    """Atlassian's REST APIs for one Forge installation, with a token Forge sent.

    ``ForgeClient.from_call(request.forge).get("/rest/api/3/myself")`` returns a
    ``requests.Response`` (as the app: ``x-forge-oauth-system``; ``as_user=True``: the user's
    ``x-forge-oauth-user``), with the call's own token, or a newer one this process was given.
    :meth:`for_installation` uses the newest token an earlier Forge call left in *this process*
    (tokens are never stored: a task worker, another process, has none). Raises
    :class:`ForgeTokenUnavailable` or ``ForeignURL`` before sending, ``requests`` exceptions
    for transport failures. ``auth`` and ``allow_redirects`` belong to the client.
    """

    def __init__(
        self,
        installation_id: str,
        api_base_url: str,
        *,
        kind: str = SYSTEM,
        token: ForgeToken | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.installation_id = installation_id
        self.api_base_url = check_api_base_url(api_base_url)
        self.kind = kind
        self.token = token  # the call's own token, used first while it is usable
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxies or netrc credentials from the environment
        adapter = HTTPAdapter(max_retries=_retry())
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    @classmethod
    def from_call(cls, forge: ForgeCall, *, as_user: bool = False, **kwargs: Any) -> ForgeClient:
        """For the installation of a verified call; its tokens are offered to :data:`tokens`."""
        tokens.offer(forge.installation_id, SYSTEM, forge.system_token)
        if forge.account_id:
            tokens.offer(forge.installation_id, f"{USER}:{forge.account_id}", forge.user_token)
        kind = f"{USER}:{forge.account_id}" if as_user else SYSTEM
        if as_user and not forge.account_id:
            raise ForgeTokenUnavailable("This Forge call has no user (no principal): call as the app.")
        token = forge.user_token if as_user else forge.system_token
        return cls(forge.installation_id, forge.api_base_url, kind=kind, token=token, **kwargs)

    @classmethod
    def for_installation(cls, installation: ForgeInstallation, **kwargs: Any) -> ForgeClient:
        """As the app, for a Forge installation, with the system token a Forge call left here."""
        return cls(installation.installation_id, installation.api_base_url, kind=SYSTEM, **kwargs)

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """One call with the newest unexpired token of the client's kind."""
        for owned in ("auth", "allow_redirects"):
            if owned in kwargs:
                raise JiraCallError(f"{owned!r} is set by the client")
        now = time.time()
        token = self.token if self.token is not None and self.token.usable(now, TOKEN_MARGIN) else None
        token = token or tokens.get(self.installation_id, self.kind, now)
        if token is None:
            raise ForgeTokenUnavailable(
                f"No unexpired {self.kind.split(':')[0]} token for Forge installation "
                f"{self.installation_id}: Forge sends one with each call when the manifest enables it "
                "(auth.appSystemToken)."
            )
        url = url_below(self.api_base_url, path_or_url)
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.request(
            method.upper(),
            url,
            auth=BearerAuth(token.value, self.api_base_url),
            allow_redirects=False,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<ForgeClient {self.installation_id} {self.kind.split(':')[0]}>"  # never a token


__all__ = ["ForgeClient", "ForgeTokenStore", "ForgeTokenUnavailable", "check_api_base_url", "tokens"]
