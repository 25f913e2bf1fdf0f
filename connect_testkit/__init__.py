"""A test kit for Connect apps built on this project: sign as Atlassian and Jira do, serve keys.

Import it from your tests (this project's own tests do); nothing in ``lifecycle`` or ``tenants``
imports it::

    from connect_testkit import KeyServer, generate_rsa_key, sign_install, sign_tenant

    key = generate_rsa_key()
    with KeyServer() as key_server:           # point CONNECT_KEY_SERVERS at key_server.url
        key_server.publish("test/kid-1", key)
        token = sign_install(key, kid="test/kid-1", client_key="t1", audience=BASE_URL)

Forge remote calls: ``key_server.publish_jwk(kid, key)``, point ``FORGE_JWKS_URL`` at
``key_server.jwks_url``, and sign with ``sign_fit(key, kid=kid, app_id=FORGE_APP_ID)``.

Modules: ``connect_testkit.signing`` (tokens, qsh, FITs), ``connect_testkit.keyserver`` (a loopback
key and JWKS server with fault modes) and ``connect_testkit.fakejira`` (a loopback Jira that checks the
app's calls back into it as Jira does, with the OAuth 2.0 token endpoint, scriptable answers).
"""

from connect_testkit.fakejira import Answer, FakeJira
from connect_testkit.keyserver import BEHAVIOURS, KeyServer
from connect_testkit.signing import (
    CONTEXT_QSH,
    FORGE_APP_ID,
    canonical_request,
    forge_event,
    forge_oauth_token,
    generate_rsa_key,
    public_jwk,
    public_pem,
    qsh_for,
    sign_fit,
    sign_install,
    sign_tenant,
)

__all__ = [
    "BEHAVIOURS",
    "CONTEXT_QSH",
    "FORGE_APP_ID",
    "Answer",
    "FakeJira",
    "KeyServer",
    "canonical_request",
    "forge_event",
    "forge_oauth_token",
    "generate_rsa_key",
    "public_jwk",
    "public_pem",
    "qsh_for",
    "sign_fit",
    "sign_install",
    "sign_tenant",
]
