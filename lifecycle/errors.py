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
        return self.code

    @property
    def audit_detail(self) -> str:
        return self.detail


# --- 400: the request itself is not what Atlassian sends -----------------------------------


class BadRequest(ConnectError):
    status_code = 400


class MalformedBody(BadRequest):
    code = "malformed_body"
    explanation = "The body is not a JSON object with the fields Atlassian sends."
    fix = "Send a JSON object with string clientKey, baseUrl, key and eventType."


class EventTypeMismatch(BadRequest):
    code = "event_type_mismatch"
    explanation = "The body's eventType does not match the lifecycle URL it was sent to."
    fix = "Check that the descriptor's lifecycle URLs point at the matching endpoints."


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
    fix = "Send the Connect JWT in the Authorization header with the 'JWT ' prefix."


class MalformedToken(AuthenticationFailed):
    code = "malformed_token"
    explanation = "The token is not a well-formed JWT."
    fix = "Send a compact JWS (three base64url parts) of at most 8 KB."


class UnsupportedAlgorithm(AuthenticationFailed):
    code = "unsupported_algorithm"
    explanation = "The token is signed with an algorithm this endpoint does not accept."
    fix = "Lifecycle installed/uninstalled take RS256; everything else takes HS256."


class SignedInstallRequired(AuthenticationFailed):
    code = "signed_install_required"
    explanation = "This lifecycle callback was not signed by Atlassian with RS256."
    fix = 'Add "apiMigrations": {"signed-install": true} to atlassian-connect.json and reinstall the app.'


class MissingKid(AuthenticationFailed):
    code = "missing_kid"
    explanation = "The RS256 token has no 'kid' header naming Atlassian's signing key."
    fix = 'Enable "apiMigrations": {"signed-install": true} so Atlassian sends a kid.'


class InvalidKid(AuthenticationFailed):
    code = "invalid_kid"
    explanation = "The token's 'kid' header is not a valid key id."
    fix = "A kid is 1-256 characters of A-Z a-z 0-9 _ - /, without '..', '//' or a leading '/'."


class UnknownKid(AuthenticationFailed):
    code = "unknown_kid"
    explanation = "No configured key server knows the token's key id."
    fix = "Check CONNECT_KEY_SERVERS; the production servers are Atlassian's two key CDNs."


class BadSignature(AuthenticationFailed):
    code = "bad_signature"
    explanation = "The token's signature does not verify."
    fix = "The token was not signed by Atlassian (RS256) or with this tenant's sharedSecret."


class MissingClaim(AuthenticationFailed):
    code = "missing_claim"
    explanation = "The token lacks a required claim (iss, iat, exp, qsh or aud)."
    fix = "Connect tokens carry iss, iat, exp and qsh; lifecycle tokens also carry aud."


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
    fix = "The token and the body must come from the same tenant."


class QshMismatch(AuthenticationFailed):
    code = "qsh_mismatch"
    explanation = "The token's qsh does not match this request's method, path and query."
    fix = "Sign the exact request sent; a path prefix in baseUrl must match CONNECT_BASE_URL."


class ContextQshNotAllowed(AuthenticationFailed):
    code = "context_qsh_not_allowed"
    explanation = "A context-qsh token was sent where a request-bound qsh is required."
    fix = "Server-to-server calls must carry the qsh of the exact request."


class UnknownTenant(AuthenticationFailed):
    code = "unknown_tenant"
    explanation = "No installation exists for the token's issuer."
    fix = "The app must be installed on this site before it can call it."


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

    def __init__(self, cause: ConnectError) -> None:
        self.cause = cause
        super().__init__()

    @property
    def audit_code(self) -> str:
        return self.cause.code

    @property
    def audit_detail(self) -> str:
        return self.cause.detail


class ReplayBodyMismatch(AuthenticationFailed):
    code = "replay_body_mismatch"
    explanation = "This token was already used with a different body."
    fix = "Each lifecycle token is good for one body only; a changed body means tampering."


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
    fix = "Atlassian sends lifecycle callbacks and webhooks as POST."

    def __init__(self, detail: str | None = None, allowed: tuple[str, ...] = ("POST",)) -> None:
        self.allowed = allowed
        super().__init__(detail)


class BodyTooLarge(ConnectError):
    code = "body_too_large"
    status_code = 413
    explanation = "The request body is larger than this endpoint accepts."
    fix = "Lifecycle bodies are small JSON objects; a large body is not from Atlassian."


class UnsupportedMediaType(ConnectError):
    code = "unsupported_media_type"
    status_code = 415
    explanation = "The request body is not application/json."
    fix = "Send the body with Content-Type: application/json."


# --- 503: a dependency failed before a verdict ------------------------------------------------


class ServiceUnavailable(ConnectError):
    status_code = 503
    retry_after: ClassVar[int] = 30


class KeyServerUnavailable(ServiceUnavailable):
    code = "key_server_unavailable"
    explanation = "No key server answered with a usable public key."
    fix = "Check outbound https to CONNECT_KEY_SERVERS; Jira will retry."


class TenantSecretUnavailable(ServiceUnavailable):
    code = "tenant_secret_unavailable"
    explanation = "The tenant's stored sharedSecret does not decrypt with TENANT_SECRET_KEYS."
    fix = "Put back the key that encrypted it (any position in TENANT_SECRET_KEYS); Jira will retry."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    explanation = "The database could not be reached."
    fix = "Check DATABASE_URL and the database server; Jira will retry."


class CacheUnavailable(ServiceUnavailable):
    code = "cache_unavailable"
    explanation = "The Django cache (replay guard) could not be reached."
    fix = "Check CACHE_URL and the cache server; Jira will retry."


def all_error_classes() -> list[type[ConnectError]]:
    """Every concrete reason class, for documentation and the admin's explanations."""
    found: list[type[ConnectError]] = []
    pending: list[type[ConnectError]] = [ConnectError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if "code" in sub.__dict__:
                found.append(sub)
    return sorted(found, key=lambda c: c.code)


REASONS: dict[str, type[ConnectError]] = {cls.code: cls for cls in all_error_classes()}
