"""age keys: recipients (public keys) and identities (secret keys), the errors of a key problem, and the
name of an encrypted artifact. An error never shows a secret: an identity pasted where a recipient
belongs is said to be one, masked, and not quoted."""

from __future__ import annotations

import contextlib
import re
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
#: An age identity anywhere in a text (a pasted key file), in either case (Bech32 is case-insensitive).
IDENTITY_IN_TEXT = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+", re.IGNORECASE)


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


def _secret_in(value: str) -> str | None:
    """What secret a string pasted as a recipient holds ("an age identity", "a private key"), or None."""
    upper = value.upper()
    if "SECRET-KEY-1" in upper or upper.lstrip().startswith("AGE-PLUGIN-"):
        return "an age identity (a secret key)"
    if "PRIVATE KEY" in upper:
        return "a private key"
    return None


def _refuse_secret(item: str, kind: str, where: str) -> InvalidOptionError:
    """The error for a secret given as a recipient: it is masked and never quoted; an age identity's own
    public key (safe to show) is named, since that is what belongs there."""
    from airflow_provider_pgbackup.compat import mask_secret

    mask_secret(item)
    found = IDENTITY_IN_TEXT.findall(item)
    for token in found:
        mask_secret(token)
    hint = "give its public key instead (`age-keygen -y key.txt` prints it; ssh: `ssh-keygen -y -f key`)"
    if found:
        with contextlib.suppress(Exception):
            public = load_pyrage().x25519.Identity.from_str(found[0].upper()).to_public()
            hint = f"its public key, the recipient to give instead, is {public}"
    return InvalidOptionError(
        f"{where} is {kind}, where a public recipient (age1..., ssh-ed25519 ... or ssh-rsa ...) "
        f"belongs; it is not shown here and is masked in the log. Keep secret keys out of the DAG and "
        f"Variables; {hint}"
    )


def parse_recipients(value: object, *, what: str = "encryption_recipients") -> tuple[str, ...]:
    """The recipients as a tuple of public keys (one string, or a list of them); each is checked by
    pyrage and a malformed one is named. ``None``/empty -> ``()`` (no encryption).

    A secret given by mistake (an ``AGE-SECRET-KEY-1...`` identity, an age-keygen key file, a private
    key) is refused without being quoted, and masked: the message may become a DAG import error."""
    if value is None or value == "" or value == [] or value == ():
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise InvalidOptionError(
            f"{what} must be an age recipient or a list of them, not a {type(value).__name__}"
        )
    pyrage = load_pyrage()
    recipients: list[str] = []
    for number, item in enumerate(items, start=1):
        where = what if isinstance(value, str) else f"item {number} of {what}"
        if not isinstance(item, str):
            raise InvalidOptionError(f"{where} is a {type(item).__name__}, not a string")
        secret = _secret_in(item)
        if secret is not None:
            raise _refuse_secret(item, secret, where)
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


def encryption_mismatch(uri: str, recorded: bool, *, key_given: bool) -> str | None:
    """What is wrong when a backup's name (``.age``), its manifest (``recorded``: it records encryption)
    and the caller (``key_given``) disagree about whether it is encrypted, or None when they agree. The
    read-side twin of :func:`check_artifact_name`: a plaintext backup where an encrypted one belongs (a
    downgrade) is never passed as plaintext."""
    named = uri.rstrip("/").endswith(AGE_SUFFIX)
    if recorded and not named:
        return (
            f"the manifest of {uri} records age encryption but the name does not end with "
            f"{AGE_SUFFIX!r}: the provider names every encrypted backup so"
        )
    if recorded or not (named or key_given):
        return None
    if named:
        return (
            f"{uri} is named as an encrypted backup (it ends with {AGE_SUFFIX!r}) but its manifest "
            "records no encryption: a plaintext backup where an encrypted one belongs is never passed "
            "(it may have replaced the encrypted one)"
        )
    return (
        f"a decryption key was given (decryption_conn_id) but the manifest of {uri} records no "
        "encryption: a plaintext backup where an encrypted one is expected is never passed; leave "
        "decryption_conn_id out for a backup that is meant to be plaintext"
    )
