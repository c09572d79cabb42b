"""age keys: recipients (public keys) and identities (secret keys), the errors of a key problem, and the
name of an encrypted artifact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.pipeline import StreamCorrupt

#: The value of the manifest's ``encryption.format``.
AGE_FORMAT = "age-v1"
#: What an encrypted artifact's name (and each file of an encrypted directory artifact) ends with.
AGE_SUFFIX = ".age"
RECIPIENT_PREFIXES = ("age1", "ssh-ed25519 ", "ssh-rsa ")
# Stanza type in the header for each kind of recipient.
STANZA_TYPES = {"age1": "X25519", "ssh-ed25519 ": "ssh-ed25519", "ssh-rsa ": "ssh-rsa"}


class EncryptionUnavailable(InvalidOptionError):
    """Encryption was asked for but ``pyrage`` (the ``[age]`` extra) is not installed."""


class NoMatchingIdentity(ValueError):
    """None of the identities can open the artifact: a key problem (wrong connection), not bad bytes."""


class CiphertextCorrupt(StreamCorrupt):
    """The ciphertext fails age's authentication: tampered, truncated or not age at all."""


class IdentityError(ValueError):
    """The decryption connection holds no usable age identity (the message never shows the secret)."""


def load_pyrage() -> Any:
    try:
        import pyrage
    except ImportError as err:  # an optional extra
        raise EncryptionUnavailable(
            "age encryption needs pyrage: install airflow-provider-pgbackup[age]"
        ) from err
    return pyrage


# ------------------------------------------------------------------------------------------ recipients
def recipient_kind(text: str) -> str | None:
    return next((p for p in RECIPIENT_PREFIXES if text.startswith(p)), None)


def parse_recipients(value: object, *, what: str = "encryption_recipients") -> tuple[str, ...]:
    """The recipients as a tuple of public keys (one string, or a list of them); each is checked by
    pyrage and a malformed one is named. ``None``/empty -> ``()`` (no encryption)."""
    if value is None or value == "" or value == [] or value == ():
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InvalidOptionError(f"{what} must be an age recipient or a list of them, not {value!r}")
    pyrage = load_pyrage()
    recipients: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidOptionError(f"{what}: {item!r} is not a string")
        text = " ".join(item.split())  # one line; an ssh key's comment is kept, it is public
        kind = recipient_kind(text)
        if kind is None:
            raise InvalidOptionError(
                f"{what}: {item!r} is not an age recipient (age1..., ssh-ed25519 ... or ssh-rsa ...)"[:300]
            )
        module = pyrage.x25519 if kind == "age1" else pyrage.ssh
        try:
            module.Recipient.from_str(text)
        except Exception as err:  # pyrage.RecipientError
            raise InvalidOptionError(f"{what}: {item!r} is malformed: {err}"[:300]) from None
        if text not in recipients:
            recipients.append(text)
    return tuple(recipients)


def pyrage_recipients(recipients: Sequence[str]) -> list[Any]:
    pyrage = load_pyrage()
    return [(pyrage.x25519 if r.startswith("age1") else pyrage.ssh).Recipient.from_str(r) for r in recipients]


# ------------------------------------------------------------------------------------------ identities
def parse_identities(secret: str | None, *, what: str = "the decryption connection") -> list[Any]:
    """pyrage identities from a connection's password: one or more ``AGE-SECRET-KEY-1...`` lines
    (an ``age-keygen`` key file as it is, ``#`` comments allowed). Errors never show the secret."""
    pyrage = load_pyrage()
    identities = []
    for number, line in enumerate((secret or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise IdentityError(
                f"{what}: line {number} of its password is not an AGE-SECRET-KEY-1... identity"
            )
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise IdentityError(
                f"{what}: line {number} of its password is a malformed age identity"
            ) from None
    if not identities:
        raise IdentityError(f"{what} has no AGE-SECRET-KEY-1... identity in its password")
    return identities


def public_keys(identities: Sequence[Any]) -> list[str]:
    """The recipients (public keys) of identities: safe to log."""
    return [str(i.to_public()) for i in identities]


def check_artifact_name(path: str, recipients: Sequence[str], *, what: str = "output_path") -> None:
    """An encrypted artifact's name ends with ``.age``, and only an encrypted one's: the name says what
    the bytes are, and the provider never renames what the user asked for."""
    name = path.rstrip("/")
    if recipients and not name.endswith(AGE_SUFFIX):
        raise InvalidOptionError(
            f"{what} {path!r} must end with {AGE_SUFFIX!r}: the backup is encrypted to "
            "encryption_recipients (e.g. /backups/db.dump.age)"
        )
    if not recipients and name.endswith(AGE_SUFFIX):
        raise InvalidOptionError(
            f"{what} {path!r} ends with {AGE_SUFFIX!r} but no encryption_recipients are given: "
            "the backup would not be encrypted"
        )
