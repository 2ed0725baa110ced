"""The installation's keyring: secrets made for one installation, never taken from the source.

JSON ``{"current": "<kid>", "keys": {"<kid>": "<secret>", ...}}``: key ids of 1-32 characters from
``A-Z a-z 0-9 _ -``, secrets of at least 32 characters. The ``current`` key signs new device tokens
(accounts.py; each token names its key id) and keys the tenants' S3 prefixes (storage.tenant_prefix).
Every key verifies device tokens, so rotating is: add a new key, make it ``current``, restart the
services; drop the old key once its tokens may go (anonymous devices then get new ones).

``make up`` makes the local stack's keyring (var/secrets/keyring.json, mode 0600, see settings.py);
the Helm chart makes one at install, or takes an existing Secret (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError, model_validator

KeyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
MIN_SECRET_CHARS = 32


class KeyringMissing(RuntimeError):
    """No keyring is configured where one is needed (a service that signs, checks or stores)."""


class Keyring(BaseModel):
    """The keyring; raises pydantic's ValidationError (never showing a secret) when malformed."""

    model_config = ConfigDict(hide_input_in_errors=True, frozen=True)

    current: KeyId
    keys: dict[KeyId, SecretStr] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Keyring:
        short = sorted(kid for kid, secret in self.keys.items() if len(secret.get_secret_value()) < MIN_SECRET_CHARS)
        if short:
            raise ValueError(f"keyring: the secrets of {', '.join(short)} are shorter than {MIN_SECRET_CHARS} "
                             "characters")
        if self.current not in self.keys:
            raise ValueError(f"keyring: current key {self.current!r} is not among its keys")
        return self

    @classmethod
    def generate(cls, kid: str | None = None) -> Keyring:
        """A keyring of one new random key (256 bits), by default with the id ``k<YYYYMMDD>``."""
        kid = kid or time.strftime("k%Y%m%d")
        return cls(current=kid, keys={kid: SecretStr(secrets.token_urlsafe(32))})

    @classmethod
    def read(cls, path: Path, setting: str) -> Keyring:
        """The keyring in the JSON file ``path``; raises ValueError naming ``setting`` (never a secret)."""
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except OSError as exc:
            raise ValueError(f"{setting}: cannot read {path}: {exc.strerror}") from None
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: " * bool(e["loc"])
                                 + e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise ValueError(f"{setting}: {path} is not a keyring ({problems})") from None

    def to_json(self) -> str:
        """The keyring with its secrets, for writing to a file that only its owner may read."""
        keys = {kid: secret.get_secret_value() for kid, secret in self.keys.items()}
        return json.dumps({"current": self.current, "keys": keys}, indent=2) + "\n"

    def secret(self, kid: str) -> bytes | None:
        """The secret of key ``kid``, or None when the keyring does not hold it."""
        found = self.keys.get(kid)
        return found.get_secret_value().encode() if found is not None else None

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one ``purpose`` (HMAC-SHA256 of it under the current secret)."""
        return hmac.new(self.secret(self.current), purpose.encode(), hashlib.sha256).digest()

