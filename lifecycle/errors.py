"""Every way a Connect request can be refused, one exception class per reason code.

Pure Python (no Django import) so that the protocol module can raise these directly. Each
class carries the HTTP status it maps to, its stable reason ``code`` (the fixed enumeration of
SPEC section 2), a one-sentence ``explanation`` and ``fix`` for operators, and a per-request
``detail`` that says what was wrong with *this* request. Details never contain tokens, secrets
or bodies. Exactly one place (``lifecycle.middleware``) turns these into HTTP responses.
"""

from __future__ import annotations

from typing import ClassVar


class ConnectError(Exception):
    """Base of every refusal. Subclasses set ``code``, ``status_code`` and the texts."""

    code: ClassVar[str] = "connect_error"
    # The audit row's reason when it is more precise than the answer's ``code`` ("" for the same).
    reason: ClassVar[str] = ""
    status_code: ClassVar[int] = 401
    explanation: ClassVar[str] = "The request was refused."
    fix: ClassVar[str] = "See the detail for what to change."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or f"{self.explanation} {self.fix}"
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"

    @property
    def audit_code(self) -> str:
        """The reason written to the audit trail (may be more precise than the response's)."""
        return self.reason or self.code

    @property
    def audit_detail(self) -> str:
        return self.detail


# --- 400: the request itself is not what Atlassian sends -----------------------------------


class BadRequest(ConnectError):
    status_code = 400


class MalformedBody(BadRequest):
    code = "malformed_body"
    explanation = "The body is not a JSON object with the fields Atlassian sends."
    fix = (
        "If Jira sent it, check that no proxy rewrites or truncates request bodies; otherwise it did not "
        "come from Jira and needs no action."
    )


class EventTypeMismatch(BadRequest):
    code = "event_type_mismatch"
    explanation = "The body's eventType does not match the lifecycle URL it was sent to."
    fix = "Check that the descriptor's lifecycle URLs point at the matching endpoints."


class InvalidWebhookEvent(BadRequest):
    code = "invalid_webhook_event"
    explanation = "The webhook URL's event name is longer than 64 characters or holds control characters."
    fix = "Jira's event names are short printable words (jira:issue_created): check the descriptor's URLs."


class InvalidWebhookIdentifier(BadRequest):
    code = "invalid_webhook_identifier"
    explanation = (
        "The X-Atlassian-Webhook-Identifier header is longer than 255 characters or holds control characters."
    )
    fix = "Jira's identifiers are short and printable; this did not come from Jira and needs no action."


class AppKeyMismatch(BadRequest):
    code = "app_key_mismatch"
    explanation = "The body's key is not this app's key."
    fix = "Set CONNECT_APP_KEY to the key of the descriptor Jira installed."


# --- 401: authentication failed --------------------------------------------------------------


class AuthenticationFailed(ConnectError):
    status_code = 401


class MissingToken(AuthenticationFailed):
    code = "missing_token"
    explanation = "No 'Authorization: JWT <token>' header was sent."
    fix = (
        "If Jira sent it, a proxy or the WSGI server stripped the Authorization header (Apache mod_wsgi "
        "needs WSGIPassAuthorization On); otherwise it did not come from Jira."
    )


class PageTokenMissing(MissingToken):
    reason = "jwt_parameter_missing"
    explanation = "The page was loaded without its 'jwt' query parameter."
    fix = (
        "Jira adds it when it loads a module's URL: open the page from Jira. If Jira loaded it, a "
        "redirect or a proxy dropped the query string."
    )


class TokenSourcesDisagree(AuthenticationFailed):
    code = "token_sources_disagree"
    explanation = "The page's jwt query parameter and the Authorization header carry different tokens."
    fix = (
        "Send one token: Jira loads pages with ?jwt= only. Two tokens did not come from Jira and need "
        "no action."
    )


class TokenInQuery(AuthenticationFailed):
    code = "jwt_parameter_not_accepted"
    explanation = "This route takes its token in the Authorization header, not in the jwt query parameter."
    fix = (
        "Send the page's calls with a context token from AP.context.getToken() in an "
        "'Authorization: JWT <token>' header: a token in a URL ends up in logs and browser history."
    )


class MalformedToken(AuthenticationFailed):
    code = "malformed_token"
    explanation = "The token is not a well-formed JWT."
    fix = (
        "If Jira sent it, a proxy altered it on the way (the Authorization header, or a page's jwt query "
        "parameter); otherwise it did not come from Jira and needs no action."
    )


class UnsupportedAlgorithm(AuthenticationFailed):
    code = "unsupported_algorithm"
    explanation = "The token is signed with an algorithm this endpoint does not accept."
    fix = (
        "Jira signs installed/uninstalled with RS256 and everything else with HS256, so this did not come"
        " from Jira and needs no action; if it repeats, check which URL the descriptor declares for it."
    )


class SignedInstallRequired(AuthenticationFailed):
    code = "signed_install_required"
    explanation = "This lifecycle callback was not signed by Atlassian with RS256."
    fix = 'Add "apiMigrations": {"signed-install": true} to atlassian-connect.json and reinstall the app.'


class SignedInstallHeaderMissing(SignedInstallRequired):
    """No header although the served descriptor has signed install on: answered as
    ``signed_install_required`` (SPEC 2), recorded with this more precise reason."""

    reason = "authorization_header_missing"
    explanation = (
        "The lifecycle callback had no Authorization header, yet the served descriptor has signed "
        "install on, so Jira signs it."
    )
    fix = (
        "Likely causes, in order: the header was stripped before Django (Apache mod_wsgi needs "
        "WSGIPassAuthorization On; some proxies drop it); Jira still holds an older descriptor "
        "(update or reinstall the app in Manage apps); the call did not come from Jira."
    )


class SignedInstallStaleDescriptor(SignedInstallRequired):
    """HS256 although the served descriptor has signed install on: answered as
    ``signed_install_required`` (SPEC 2), recorded with this more precise reason."""

    reason = "hs256_lifecycle_token"
    explanation = (
        "The lifecycle callback is signed with HS256 (the tenant's own sharedSecret), yet the served "
        "descriptor has signed install on, so Jira signs it with RS256."
    )
    fix = (
        "Jira still holds an older descriptor without signed install: update or reinstall the app "
        "in Manage apps. Otherwise the call is forged; nothing was changed."
    )


class MissingKid(AuthenticationFailed):
    code = "missing_kid"
    explanation = "The RS256 token has no 'kid' header naming Atlassian's signing key."
    fix = 'Enable "apiMigrations": {"signed-install": true} so Atlassian sends a kid.'


class InvalidKid(AuthenticationFailed):
    code = "invalid_kid"
    explanation = "The token's 'kid' header is not a valid key id."
    fix = "Atlassian's key ids never look like this: the call did not come from Jira and needs no action."


class UnknownKid(AuthenticationFailed):
    code = "unknown_kid"
    explanation = "No configured key server knows the token's key id."
    fix = (
        "If Jira sent it, check CONNECT_KEY_SERVERS (production uses Atlassian's two key servers); "
        "otherwise the kid was made up and needs no action."
    )


class BadSignature(AuthenticationFailed):
    code = "bad_signature"
    explanation = "The token's signature does not verify."
    fix = (
        "On a webhook or enabled/disabled, the stored sharedSecret is not the one Jira holds: reinstall "
        "the app on the site (Manage apps). On installed/uninstalled, Atlassian did not sign it: if Jira "
        "sent it, check CONNECT_KEY_SERVERS."
    )


class MissingClaim(AuthenticationFailed):
    code = "missing_claim"
    explanation = "The token lacks a required claim (iss, iat, exp, qsh or aud)."
    fix = "Jira's tokens always carry these claims: the call did not come from Jira and needs no action."


class TokenExpired(AuthenticationFailed):
    code = "token_expired"
    explanation = "The token has expired."
    fix = "Check the server clock (NTP) or raise CONNECT_JWT_LEEWAY slightly."


class TokenNotYetValid(AuthenticationFailed):
    code = "token_not_yet_valid"
    explanation = "The token's iat or nbf lies in the future."
    fix = "Check the server clock (NTP) or raise CONNECT_JWT_LEEWAY slightly."


class TokenLifetimeTooLong(AuthenticationFailed):
    code = "token_lifetime_too_long"
    explanation = "The token's exp - iat exceeds the accepted lifetime."
    fix = "Atlassian's tokens live minutes; raise CONNECT_JWT_MAX_LIFETIME only if you must."


class AudienceMismatch(AuthenticationFailed):
    code = "audience_mismatch"
    explanation = "The token was issued for another app's baseUrl."
    fix = "Set CONNECT_BASE_URL (or CONNECT_EXTRA_AUDIENCES) to the descriptor's baseUrl."


class IssuerMismatch(AuthenticationFailed):
    code = "issuer_mismatch"
    explanation = "The token's iss is not the body's clientKey."
    fix = (
        "One tenant's token came with another tenant's body, so the call is forged and nothing was "
        "changed; if it repeats, block its source address."
    )


class QshMismatch(AuthenticationFailed):
    code = "qsh_mismatch"
    explanation = "The token's qsh does not match this request's method, path and query."
    fix = (
        "Make the proxy pass the path and query unchanged, and give CONNECT_BASE_URL the descriptor "
        "baseUrl's path prefix; the detail shows the canonical request this server computed."
    )


class ContextQshNotAllowed(AuthenticationFailed):
    code = "context_qsh_not_allowed"
    explanation = "A context-qsh token was sent where a request-bound qsh is required."
    fix = (
        "Context tokens (AP.context.getToken()) belong on the app's own @connect_context routes. Jira "
        "never sends one to a page, lifecycle or webhook route: one here is a page's mistake, or did "
        "not come from Jira."
    )


class UnknownTenant(AuthenticationFailed):
    code = "unknown_tenant"
    explanation = "No installation exists for the token's issuer."
    fix = (
        "Jira calls only after a successful installed: find the site's rejected installed under Failed "
        "verifications, fix its cause, and reinstall the app."
    )


class TenantUninstalled(AuthenticationFailed):
    code = "tenant_uninstalled"
    explanation = "The tenant has uninstalled the app."
    fix = "Reinstall the app on the site; its old sharedSecret is no longer accepted."


class TokenRejected(AuthenticationFailed):
    """The one answer for a tenant-signed call that fails: the true reason goes to the audit only.

    Unknown tenant, bad signature, expiry and a wrong qsh look alike from outside, so that a
    caller cannot probe which client keys exist or which check it failed.
    """

    code = "invalid_token"
    explanation = "The JWT could not be verified for this tenant."
    fix = "The app's operators can see the reason under Failed verifications in Django admin."

    def __init__(self, cause: ConnectError, *, forge: bool = False) -> None:
        self.cause = cause
        # A Forge call names no tenant: its one answer says which token failed.
        super().__init__(f"The Forge Invocation Token could not be verified. {self.fix}" if forge else None)

    @property
    def audit_code(self) -> str:
        return self.cause.code

    @property
    def audit_detail(self) -> str:
        return self.cause.detail


class StaleLifecycleToken(AuthenticationFailed):
    code = "stale_lifecycle_token"
    explanation = (
        "The installed/uninstalled token was issued before the tenant's newest accepted one, so "
        "applying it would undo a later event."
    )
    fix = (
        "A captured token was resent, or Jira retried very late; nothing was changed. If the site's "
        "state looks wrong, reinstall the app there (Manage apps)."
    )


class ReplayBodyMismatch(AuthenticationFailed):
    code = "replay_body_mismatch"
    explanation = "This token was already used with a different body."
    fix = (
        "A captured token was resent with another body; nothing was changed. If it repeats, block its "
        "source address."
    )


# --- 403 / 405 / 413 / 415 ------------------------------------------------------------------


class TenantHostNotAllowed(ConnectError):
    code = "tenant_host_not_allowed"
    status_code = 403
    explanation = "The tenant's baseUrl is not an https URL on an allowed Atlassian host."
    fix = "Add the host suffix to CONNECT_TENANT_HOSTS if this site is genuine."


class TenantSuspended(ConnectError):
    code = "tenant_suspended"
    status_code = 403
    explanation = "An operator has suspended this tenant."
    fix = "Resume the tenant in Django admin to accept its calls again."


class MethodNotAllowed(ConnectError):
    code = "method_not_allowed"
    status_code = 405
    explanation = "This endpoint does not accept that HTTP method."
    fix = "Not a Connect call (bots and browsers send GET): no action needed; Jira sends POST."

    def __init__(self, detail: str | None = None, allowed: tuple[str, ...] = ("POST",)) -> None:
        self.allowed = allowed
        super().__init__(detail)


class BodyTooLarge(ConnectError):
    code = "body_too_large"
    status_code = 413
    explanation = "The request body is larger, in bytes or in JSON values, than this endpoint accepts."
    fix = (
        "For webhooks, raise CONNECT_WEBHOOK_MAX_BODY or CONNECT_WEBHOOK_MAX_JSON_VALUES (the detail"
        " says which); a lifecycle body this large did not come from Jira and needs no action."
    )


class UnsupportedMediaType(ConnectError):
    code = "unsupported_media_type"
    status_code = 415
    explanation = "The request body is not application/json."
    fix = (
        "If Jira sent it, a proxy changed the Content-Type header; otherwise it did not come from Jira "
        "and needs no action."
    )


class WebhookTokenReused(ConnectError):
    """409: this token already carried other content. Jira signs its own retries of an identifier
    with the same body, so a genuine delivery never gets it."""

    code = "webhook_token_reused"
    status_code = 409
    explanation = "This webhook token already carried another body, or a delivery it is sent without."
    fix = "A captured token was resent with other content; nothing was processed and nothing is needed."


# --- 503: a dependency failed before a verdict ------------------------------------------------


class ServiceUnavailable(ConnectError):
    """A dependency failed; ``retry_after``: seconds for the Retry-After header."""

    status_code = 503

    def __init__(self, detail: str | None = None, retry_after: int = 30) -> None:
        self.retry_after = retry_after
        super().__init__(detail)


class KeyServerUnavailable(ServiceUnavailable):
    code = "key_server_unavailable"
    explanation = "No key server answered with a usable public key."
    fix = "Check outbound https to CONNECT_KEY_SERVERS; Jira will retry."


class KeyFetchRateLimited(ServiceUnavailable):
    code = "key_fetch_rate_limited"
    explanation = "Too many fetches of install keys not cached yet, from this address or in all."
    fix = (
        "Requests naming ever new kids are a flood (Atlassian rotates kids rarely). A genuine install "
        "refused here fails: retry it after Retry-After, and raise KEY_FETCH_RATE in CONNECT if "
        "genuine installs hit the limit (behind a proxy, every request has the proxy's address)."
    )


class TenantSecretUnavailable(ServiceUnavailable):
    code = "tenant_secret_unavailable"
    explanation = "The tenant's stored sharedSecret does not decrypt with TENANT_SECRET_KEYS."
    fix = "Put back the key that encrypted it (any position in TENANT_SECRET_KEYS); Jira will retry."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    explanation = "The database could not be reached."
    fix = "Check DATABASE_URL and the database server; Jira will retry."


class TaskQueueUnavailable(ServiceUnavailable):
    code = "task_queue_unavailable"
    explanation = "The webhook's processing task could not be queued, so the delivery was not acknowledged."
    fix = "Check TASKS_RQ_URL and the Redis server it names; Jira will retry."


class TenantChangedMeanwhile(ServiceUnavailable):
    code = "tenant_changed"
    explanation = (
        "The tenant was uninstalled, reinstalled or suspended while this call was being stored, "
        "twice in a row; nothing was stored."
    )
    fix = "Nothing to do: Jira will retry, and the retry is verified against the tenant as it is then."


class CacheUnavailable(ServiceUnavailable):
    code = "cache_unavailable"
    explanation = "The Django cache (replay guard) could not be reached."
    fix = "Check CACHE_URL and the cache server; Jira will retry."


# --- Forge remote calls (Forge Invocation Token) ---------------------------------------------
# Every FIT failure is answered with the one opaque 401 of ``TokenRejected`` (Forge retries an
# event after a 401); the audit row keeps the precise reason below.


class ForgeNotConfigured(ConnectError):
    code = "forge_not_configured"
    status_code = 404
    explanation = "The Forge routes are off: FORGE_APP_ID is not set."
    fix = "Set FORGE_APP_ID to the app's ARI (app.id in manifest.yml, ari:cloud:ecosystem::app/<uuid>)."


class ForgeTokenFailure(AuthenticationFailed):
    """Base of the reasons a Forge Invocation Token is refused (always wrapped in TokenRejected)."""

    scheme: ClassVar[str] = "Bearer"


class ForgeTokenMissing(ForgeTokenFailure):
    code = "forge_token_missing"
    explanation = "No 'Authorization: Bearer <FIT>' header was sent."
    fix = (
        "Forge always sends one: if Forge sent it, a proxy stripped the Authorization header; otherwise "
        "the call did not come from Forge and needs no action."
    )


class ForgeMalformedToken(ForgeTokenFailure):
    code = "forge_malformed_token"
    explanation = "The bearer token is not a JWT (three base64url parts with a JSON header and claims)."
    fix = "Forge's tokens are JWTs: the call did not come from Forge and needs no action."


class ForgeUnsupportedAlgorithm(ForgeTokenFailure):
    code = "forge_unsupported_algorithm"
    explanation = "The FIT's alg is not RS256 (none and HS256 are never accepted)."
    fix = "Forge signs with RS256: the call did not come from Forge and needs no action."


class ForgeMissingKid(ForgeTokenFailure):
    code = "forge_missing_kid"
    explanation = "The FIT's header has no usable kid."
    fix = "Forge's tokens always name their key: the call did not come from Forge and needs no action."


class ForgeUnknownKid(ForgeTokenFailure):
    code = "forge_unknown_kid"
    explanation = "The FIT's kid is not in the Forge JWKS, even after it was fetched again."
    fix = (
        "Check FORGE_JWKS_URL (Atlassian's by default). A made-up kid needs no action; the JWKS is "
        "fetched again at most once a minute for unknown kids."
    )


class ForgeBadSignature(ForgeTokenFailure):
    code = "forge_bad_signature"
    explanation = "The FIT's signature does not verify with the JWKS key its kid names."
    fix = "The token was altered or signed by someone else: it did not come from Forge and needs no action."


class ForgeTokenExpired(ForgeTokenFailure):
    code = "forge_token_expired"
    explanation = "The FIT has expired (exp, with CONNECT_JWT_LEEWAY)."
    fix = (
        "Forge's tokens live about 25 s: check this server's clock (NTP), or a resent token needs no action."
    )


class ForgeTokenNotYetValid(ForgeTokenFailure):
    code = "forge_token_not_yet_valid"
    explanation = "The FIT's nbf or iat is in the future (with CONNECT_JWT_LEEWAY)."
    fix = "Check this server's clock (NTP)."


class ForgeTokenLifetimeTooLong(ForgeTokenFailure):
    code = "forge_token_lifetime_too_long"
    explanation = "The FIT's exp - iat is longer than FORGE_JWT_MAX_LIFETIME."
    fix = "Forge's tokens live about 25 s: a long-lived one did not come from Forge and needs no action."


class ForgeIssuerMismatch(ForgeTokenFailure):
    code = "forge_issuer_mismatch"
    explanation = "The FIT's iss is not forge/invocation-token."
    fix = "The token is another kind of Atlassian token or a forgery: it needs no action."


class ForgeAudienceMismatch(ForgeTokenFailure):
    code = "forge_audience_mismatch"
    explanation = "The FIT's aud is not FORGE_APP_ID: it was issued for another app."
    fix = "Set FORGE_APP_ID to app.id of the manifest.yml Forge deploys (ari:cloud:ecosystem::app/<uuid>)."


class ForgeAppIdMismatch(ForgeTokenFailure):
    code = "forge_app_id_mismatch"
    explanation = "The FIT's app.id differs from its aud."
    fix = "Forge sets both to the app's id: the token did not come from Forge and needs no action."


class ForgeMissingClaim(ForgeTokenFailure):
    code = "forge_missing_claim"
    explanation = "The FIT lacks a claim Forge always sends (iss, aud, iat, exp, app.id, app.installationId)."
    fix = "Forge's tokens always carry these: the call did not come from Forge and needs no action."


class ForgeJwksUnavailable(ServiceUnavailable):
    code = "forge_jwks_unavailable"
    explanation = "The Forge JWKS could not be fetched, and no copy of it is cached."
    fix = "Check outbound https to FORGE_JWKS_URL; Forge retries events (not UI calls)."


def reason_of(cls: type[ConnectError]) -> str:
    """The reason code an audit row records for ``cls`` (its ``reason``, else its ``code``)."""
    return cls.reason or cls.code


def all_error_classes() -> list[type[ConnectError]]:
    """Every concrete reason class, sorted by audit reason, for documentation and the admin."""
    found: list[type[ConnectError]] = []
    pending: list[type[ConnectError]] = [ConnectError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if "code" in sub.__dict__ or "reason" in sub.__dict__:
                found.append(sub)
    return sorted(found, key=reason_of)


REASONS: dict[str, type[ConnectError]] = {reason_of(cls): cls for cls in all_error_classes()}
