"""tenants/crypto.py: Fernet round trip, rotation, tenant binding, fail-closed decryption."""

import pytest
from cryptography.fernet import Fernet

from tenants.crypto import (
    SecretBox,
    SecretDecryptionError,
    SecretKeyError,
    derive_development_key,
    parse_keys,
)

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def test_round_trip_and_ciphertext_hides_plaintext():
    box = SecretBox([NEW])
    token = box.encrypt("the-shared-secret", "client-a")
    assert "the-shared-secret" not in token
    assert box.decrypt(token, "client-a") == "the-shared-secret"


def test_unicode_secret_round_trips():
    box = SecretBox([NEW])
    assert box.decrypt(box.encrypt("sécret ✓", "c"), "c") == "sécret ✓"


def test_first_key_encrypts_and_every_key_decrypts():
    old_token = SecretBox([OLD]).encrypt("s1", "c")
    both = SecretBox([NEW, OLD])
    assert both.decrypt(old_token, "c") == "s1"
    assert not both.is_current(old_token)
    new_token = both.encrypt("s2", "c")
    assert both.is_current(new_token)
    with pytest.raises(SecretDecryptionError):
        SecretBox([OLD]).decrypt(new_token, "c")


def test_rotate_moves_to_first_key_and_keeps_the_binding():
    old_token = SecretBox([OLD]).encrypt("s1", "client-a")
    rotated = SecretBox([NEW, OLD]).rotate(old_token)
    assert SecretBox([NEW]).decrypt(rotated, "client-a") == "s1"
    with pytest.raises(SecretDecryptionError, match="another tenant"):
        SecretBox([NEW]).decrypt(rotated, "client-b")


def test_ciphertext_copied_to_another_tenant_is_refused():
    box = SecretBox([NEW])
    token = box.encrypt("secret-of-a", "client-a")
    with pytest.raises(SecretDecryptionError, match="another tenant"):
        box.decrypt(token, "client-b")
    # Case matters: client keys compare exactly.
    with pytest.raises(SecretDecryptionError):
        box.decrypt(token, "CLIENT-A")


@pytest.mark.parametrize("stored", ["", "not-a-token", "gAAAAABjunk", "plaintext-secret", "é"])
def test_garbage_fails_closed_and_never_returns_the_stored_value(stored):
    with pytest.raises(SecretDecryptionError) as info:
        SecretBox([NEW]).decrypt(stored, "c")
    assert stored not in str(info.value) or stored == ""


def test_valid_fernet_token_without_the_tenant_frame_is_refused():
    bare = Fernet(NEW.encode()).encrypt(b"plaintext").decode()
    with pytest.raises(SecretDecryptionError, match="unknown format"):
        SecretBox([NEW]).decrypt(bare, "c")


@pytest.mark.parametrize("keys", [[], ["short"], [NEW, "x" * 44], [NEW, ""]])
def test_bad_keys_are_refused_with_their_position(keys):
    with pytest.raises(SecretKeyError) as info:
        parse_keys(keys)
    message = str(info.value)
    assert "TENANT_SECRET_KEYS" in message
    if keys and keys[0] == NEW:
        assert "entry 2" in message
    for key in keys:
        if len(key) > 4:
            assert key not in message


def test_development_key_is_a_valid_deterministic_fernet_key():
    key = derive_development_key("some django secret")
    assert key == derive_development_key("some django secret")
    assert key != derive_development_key("another")
    assert SecretBox([key]).decrypt(SecretBox([key]).encrypt("s", "c"), "c") == "s"
