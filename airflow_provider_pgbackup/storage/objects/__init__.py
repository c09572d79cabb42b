"""What GCS, S3 and Azure Blob Storage share: stores of named objects with sizes, ETags, metadata and
create-only writes, uploaded in parts that are invisible until the upload is completed.

A backend implements :class:`ObjectClient` (a dozen small calls over its SDK, converting its errors to
the storage errors) and gets everything else from here: the streamed :class:`PartedObjectWriter`
(multipart upload / staged blocks, fed through a :class:`~airflow_provider_pgbackup.pipeline.BackgroundWriter`
so the upload overlaps its producer), the dump target, the source, the backup store, the upload of a
finished local backup and the server-side promotion. The manifest is always written last.

Split by direction: ``client`` (what a backend implements), ``write``, ``read``, ``transfer``.
"""

from __future__ import annotations

from airflow_provider_pgbackup.storage.objects.client import (
    UPLOAD_ID_KEY,
    ObjectClient,
    ObjectInfo,
    PartUpload,
    decode_metadata,
    encode_metadata,
    part_size,
)
from airflow_provider_pgbackup.storage.objects.read import ObjectArtifactSource, ObjectBackupStore
from airflow_provider_pgbackup.storage.objects.transfer import discard_promoted, promote_backup, upload_backup
from airflow_provider_pgbackup.storage.objects.write import (
    ObjectArtifactTarget,
    PartedObjectWriter,
    open_object_target,
    put_small_object,
)

__all__ = [
    "UPLOAD_ID_KEY",
    "ObjectArtifactSource",
    "ObjectArtifactTarget",
    "ObjectBackupStore",
    "ObjectClient",
    "ObjectInfo",
    "PartUpload",
    "PartedObjectWriter",
    "decode_metadata",
    "discard_promoted",
    "encode_metadata",
    "open_object_target",
    "part_size",
    "promote_backup",
    "put_small_object",
    "upload_backup",
]
