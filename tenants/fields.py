"""The encrypted shared-secret field. Migrations import it from here: keep this path stable.

The model attribute never holds ciphertext as a plain ``str``: a value read from the database
is a :class:`SealedSecret`; assigning a ``str`` means "this is a new plaintext secret", which
:meth:`EncryptedSecretField.pre_save` encrypts, bound to the instance's ``client_key``, just
before the row is written. Decrypting goes through ``Installation.reveal_shared_secret()``.
Serialization (``dumpdata``) writes the ciphertext only; ``loaddata`` reads it back sealed.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from tenants.conf import tenant_settings
from tenants.crypto import SecretBox, SecretKeyError, derive_development_key

logger = logging.getLogger(__name__)


class SealedSecret:
    """Ciphertext as stored. Its repr and str never show the ciphertext either."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "<SealedSecret: set, encrypted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealedSecret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


_WARNED: set[tuple[str, ...]] = set()


@functools.lru_cache(maxsize=4)
def _box_for(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys)


def get_secret_box() -> SecretBox:
    """The box for the configured keys (or, in DEBUG without keys, the derived development key)."""
    keys = tuple(tenant_settings.SECRET_KEYS)
    if not keys:
        if not tenant_settings.DERIVE_DEVELOPMENT_KEY:
            raise ImproperlyConfigured("TENANT_SECRET_KEYS is empty: set at least one Fernet key.")
        keys = (derive_development_key(settings.SECRET_KEY),)
        if keys not in _WARNED:  # once per process, not on every encryption
            _WARNED.add(keys)
            logger.warning("tenant secrets use a development key derived from SECRET_KEY (DEBUG only)")
    try:
        return _box_for(keys)
    except SecretKeyError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


if TYPE_CHECKING:  # django-stubs makes fields generic; Django's own classes are not subscriptable
    _TextField = models.TextField[Any, Any]
else:
    _TextField = models.TextField


class EncryptedSecretField(_TextField):
    """A text column holding Fernet ciphertext bound to the row's ``client_key``."""

    description = "An encrypted secret bound to its tenant"

    def __init__(self, *args: Any, client_key_field: str = "client_key", **kwargs: Any) -> None:
        self.client_key_field = client_key_field
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[Any, ...]:
        name, _path, args, kwargs = super().deconstruct()
        if self.client_key_field != "client_key":
            kwargs["client_key_field"] = self.client_key_field
        kwargs.pop("editable", None)
        return name, "tenants.fields.EncryptedSecretField", args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> SealedSecret | None:
        return None if value is None else SealedSecret(value)

    def to_python(self, value: Any) -> SealedSecret | None:
        # Used by deserialization: a string there is ciphertext from dumpdata.
        if value is None or isinstance(value, SealedSecret):
            return value
        return SealedSecret(str(value))

    def pre_save(self, model_instance: models.Model, add: bool) -> SealedSecret | None:
        value: SealedSecret | str | None = getattr(model_instance, self.attname)
        if isinstance(value, str):
            client_key = getattr(model_instance, self.client_key_field)
            value = SealedSecret(get_secret_box().encrypt(value, client_key))
            setattr(model_instance, self.attname, value)
        return value

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, SealedSecret):
            return value.ciphertext
        raise TypeError(
            "A plaintext secret can only be stored by assigning it to an instance and "
            "calling save(): it must be bound to the row's client_key."
        )

    def value_to_string(self, obj: models.Model) -> str:
        """The ciphertext for ``dumpdata`` (never the secret); "" when there is none."""
        value = self.value_from_object(obj)
        return value.ciphertext if isinstance(value, SealedSecret) else ""
