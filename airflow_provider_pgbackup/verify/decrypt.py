"""Decrypted views of an encrypted backup: a stream of plaintext, or a private local copy.

pg_restore reads a directory-format archive (and a custom one with several jobs) only from local
files: those are decrypted into a private ``decrypted`` scratch folder (0700, files 0600, under
``TMPDIR``; ``scratch.private_folder``) that is removed when the ``with`` block ends, also on failure or
kill, and by the next task's sweep if a SIGKILL strands it. Everything else is decrypted on the fly.

Every decryption is given the recipients the manifest records, so a header that an identity of one of
them cannot open is reported as damage (corrupt), and only a key of none of them as a key problem.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from airflow_provider_pgbackup.encryption import AGE_SUFFIX, decrypt_file, decrypted_chunks
from airflow_provider_pgbackup.manifest import FileDigest, Manifest
from airflow_provider_pgbackup.scratch import private_folder
from airflow_provider_pgbackup.storage import ArtifactSource
from airflow_provider_pgbackup.storage.base import combine_file_digests


def plaintext_name(name: str) -> str:
    return name[: -len(AGE_SUFFIX)] if name.endswith(AGE_SUFFIX) else name


def recorded_recipients(manifest: Manifest) -> list[str]:
    """The recipients the manifest records (none for a backup it records as not encrypted)."""
    return list((manifest.encryption or {}).get("recipients") or ())


def decrypted_stream(
    source: ArtifactSource, manifest: Manifest, identities: Sequence[Any]
) -> Generator[bytes, None, None]:
    """A file artifact's plaintext, decrypted on the fly (``close()`` it when stopping early)."""
    return decrypted_chunks(
        source.chunks(), identities, what=source.location.uri, recipients=recorded_recipients(manifest)
    )


def plaintext_digest(
    source: ArtifactSource, manifest: Manifest, identities: Sequence[Any]
) -> tuple[int, str]:
    """Decrypt every byte and return the plaintext's size and sha256 (a directory: the combined digest
    of its decrypted files, under their names without ``.age``), as the dump recorded them."""
    if manifest.format != "directory":
        digest, size = hashlib.sha256(), 0
        stream = decrypted_stream(source, manifest, identities)
        try:
            for chunk in stream:
                digest.update(chunk)
                size += len(chunk)
        finally:
            stream.close()
        return size, digest.hexdigest()
    files = []
    recipients = recorded_recipients(manifest)
    with source.local_copy() as folder:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder).as_posix()
            digest, size = hashlib.sha256(), 0
            with path.open("rb") as handle:
                stream = decrypted_chunks(
                    iter(lambda: handle.read(1024 * 1024), b""),
                    identities,
                    what=relative,
                    recipients=recipients,
                )
                try:
                    for chunk in stream:
                        digest.update(chunk)
                        size += len(chunk)
                finally:
                    stream.close()
            files.append(FileDigest(plaintext_name(relative), size, digest.hexdigest()))
    return sum(f.size_bytes for f in files), combine_file_digests(tuple(files))


@contextlib.contextmanager
def decrypted_copy(source: ArtifactSource, manifest: Manifest, identities: Sequence[Any]) -> Iterator[Path]:
    """The decrypted artifact (file, or folder with the ``.age`` suffixes dropped) in a private scratch
    folder for the duration of the ``with`` block."""
    recipients = recorded_recipients(manifest)
    with private_folder("decrypted") as folder:
        target = folder / plaintext_name(source.location.basename)
        with source.local_copy() as artifact:
            if manifest.format == "directory":
                target.mkdir(mode=0o700)
                for path in sorted(p for p in artifact.rglob("*") if p.is_file()):
                    relative = path.relative_to(artifact)
                    out = target / plaintext_name(relative.as_posix())
                    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    what = f"{source.location.uri}/{relative.as_posix()}"
                    decrypt_file(path, out, identities, what=what, recipients=recipients)
            else:
                decrypt_file(artifact, target, identities, what=source.location.uri, recipients=recipients)
        yield target
