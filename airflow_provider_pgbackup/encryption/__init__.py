"""age encryption (https://age-encryption.org/v1) as a byte stage: recipients, identities, header.

No cryptography is written here: encryption and decryption are ``pyrage`` (the Python binding of
rage, the Rust implementation of age), driven through its streaming ``encrypt_io`` / ``decrypt_io`` in
a thread of their own so that memory stays bounded (a few chunks) whatever the artifact's size.

- ``keys``: :func:`parse_recipients`: one string or a list of ``age1...`` / ``ssh-ed25519`` /
  ``ssh-rsa`` public keys, each checked by pyrage; a malformed one is named, a secret key given by
  mistake is refused without being quoted. :func:`parse_identities`, the errors, the ``.age`` name rule.
- ``stream``: :class:`AgeEncryptStage`, a :class:`~airflow_provider_pgbackup.pipeline.Stage` that
  encrypts what passes through and measures the plaintext (sha256 and size) on the way;
  :func:`decrypted_chunks`, the read side, mirrored: ciphertext chunks in, plaintext chunks out.
  ``NoMatchingIdentity`` when none of the identities is a recorded recipient (a key problem, never
  "corrupt"); :class:`CiphertextCorrupt` when the bytes fail age's authentication (tampered or
  truncated), or when an identity of a recorded recipient cannot open the header (it was altered).
- ``header``: :func:`read_header` / :func:`check_header`: what can be checked without a key: the
  header is well-formed age v1 and its stanzas match the recorded recipients.

The identity (``AGE-SECRET-KEY-1...``) stays in this process's memory: it is never written to a file,
an argument, an environment variable or a message.
"""

from __future__ import annotations

from airflow_provider_pgbackup.encryption.header import (
    AGE_MAGIC,
    MAX_HEADER_BYTES,
    AgeHeader,
    check_header,
    read_header,
    ssh_tag,
)
from airflow_provider_pgbackup.encryption.keys import (
    AGE_FORMAT,
    AGE_SUFFIX,
    RECIPIENT_PREFIXES,
    STANZA_TYPES,
    CiphertextCorrupt,
    EncryptionUnavailable,
    IdentityError,
    NoMatchingIdentity,
    check_artifact_name,
    encryption_mismatch,
    parse_identities,
    parse_recipients,
    public_keys,
)
from airflow_provider_pgbackup.encryption.stream import (
    AgeEncryptStage,
    decrypt_file,
    decrypted_chunks,
    decryption_error,
    encrypt_file,
)

__all__ = [
    "AGE_FORMAT",
    "AGE_MAGIC",
    "AGE_SUFFIX",
    "MAX_HEADER_BYTES",
    "RECIPIENT_PREFIXES",
    "STANZA_TYPES",
    "AgeEncryptStage",
    "AgeHeader",
    "CiphertextCorrupt",
    "EncryptionUnavailable",
    "IdentityError",
    "NoMatchingIdentity",
    "check_artifact_name",
    "check_header",
    "decrypt_file",
    "decrypted_chunks",
    "decryption_error",
    "encrypt_file",
    "encryption_mismatch",
    "parse_identities",
    "parse_recipients",
    "public_keys",
    "read_header",
    "ssh_tag",
]
