"""A boto3 S3 client from an Airflow ``aws`` connection (through the Amazon provider's ``S3Hook``) or
boto3's default credential chain, and :class:`S3ObjectClient`, the object-store calls on one bucket.

Credentials are never read or logged here: ``S3Hook`` resolves the connection (access keys, assume-role,
web identity, profiles, ``endpoint_url`` and ``region_name`` extras...), and without a connection boto3
does (environment, shared files, instance or task role; ``AWS_ENDPOINT_URL_S3`` selects an endpoint).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.compat import AirflowException, AirflowNotFoundException, BaseHook
from airflow_provider_pgbackup.storage.base import (
    DEFAULT_AWS_CONN_ID,
    ArtifactMismatchError,
    CredentialsError,
    EntryChanged,
    ObjectConflictError,
    StorageSettings,
    StoreNotFound,
)
from airflow_provider_pgbackup.storage.objects import ObjectInfo, decode_metadata, encode_metadata
from airflow_provider_pgbackup.storage.objects.backend import endpoint_object_url
from airflow_provider_pgbackup.storage.s3.location import SCHEME, S3Location, check_settings
from airflow_provider_pgbackup.storage.s3.locks import S3Locks, error_code

if TYPE_CHECKING:
    from botocore.client import BaseClient

CHECKSUM = "CRC32"  # per-part checksum, computed by botocore and verified by S3
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * 1024 * 1024  # as the AWS CLI's multipart_chunksize
COPY_PART_SIZE = 1024 * 1024 * 1024


class S3CredentialsError(CredentialsError, AirflowException):
    """The connection cannot be used (fails now, as any ``CredentialsError``); never shows key material."""


def _retries(retry_timeout: float) -> int:
    """Attempts in botocore's standard mode (exponential backoff, ~2^n s) that fit in ``retry_timeout``."""
    return 1 + min(10, max(1, int(math.log2(retry_timeout + 1))))


def get_s3_client(settings: StorageSettings) -> BaseClient:
    """A boto3 S3 client: the ``aws_conn_id`` connection through ``S3Hook``, else boto3's default chain.

    A missing connection with the default id (``aws_default``) falls back to the default chain; any
    other missing id is an error (a typo must not silently use the machine's own role).
    """
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": _retries(settings.retry_timeout)},
        connect_timeout=min(10.0, settings.retry_timeout),
        read_timeout=60,
        max_pool_connections=max(4, settings.parts_in_flight + 1),
    )
    conn_id = settings.aws_conn_id
    if conn_id:
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            if conn_id != DEFAULT_AWS_CONN_ID:
                raise
            conn = None
        if conn is not None:
            if conn.conn_type not in ("aws", "s3", "emr"):
                raise S3CredentialsError(
                    f"connection {conn_id!r} has type {conn.conn_type!r}; an 'aws' connection is needed"
                )
            try:
                from airflow.providers.amazon.aws.hooks.s3 import S3Hook
            except ImportError:
                raise S3CredentialsError(
                    f"connection {conn_id!r} needs the Amazon provider: pip install "
                    "'airflow-provider-pgbackup[amazon]'"
                ) from None
            client: BaseClient = S3Hook(aws_conn_id=conn_id, config=config).get_conn()
            return client
    import boto3

    default: BaseClient = boto3.session.Session().client("s3", config=config)
    return default


def object_url(location: S3Location, settings: StorageSettings) -> str:
    """Where a person looks at the object: its AWS console page, or, when the client's endpoint is not
    AWS's (``endpoint_url``: moto, MinIO...), the object on that endpoint (without any credential)."""
    endpoint = str(get_s3_client(settings).meta.endpoint_url or "")
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if not host or host == "amazonaws.com" or host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return location.console_url
    return endpoint_object_url(endpoint, location.bucket, location.name)


class S3PartUpload:
    """One multipart upload: parts with CRC32 checksums, completed create-only (``If-None-Match: *``)."""

    def __init__(self, owner: S3ObjectClient, name: str, upload_id: str, create_only: bool) -> None:
        self.owner = owner
        self.name = name
        self.upload_id = upload_id
        self.create_only = create_only
        self.parts: list[dict[str, Any]] = []

    def send(self, number: int, data: bytes) -> None:
        response = self.owner.s3.upload_part(
            Bucket=self.owner.bucket, Key=self.name, UploadId=self.upload_id, PartNumber=number,
            Body=data, ChecksumAlgorithm=CHECKSUM,
        )  # fmt: skip
        self.parts.append(
            {"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32": response.get("ChecksumCRC32")}
        )

    def complete(self) -> None:
        from botocore.exceptions import ClientError

        ordered = sorted(self.parts, key=lambda part: int(part["PartNumber"]))  # sent several at once
        parts = [{k: v for k, v in part.items() if v is not None} for part in ordered]
        extra = {"IfNoneMatch": "*"} if self.create_only else {}
        try:
            self.owner.s3.complete_multipart_upload(
                Bucket=self.owner.bucket, Key=self.name, UploadId=self.upload_id,
                MultipartUpload={"Parts": parts}, **extra,
            )  # fmt: skip
        except ClientError as err:
            if error_code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                self.abort()
                raise ObjectConflictError(
                    f"{self.owner.uri(self.name)} was created by someone else during the upload; not "
                    "overwritten"
                ) from err
            raise

    def abort(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.owner.s3.abort_multipart_upload(
                Bucket=self.owner.bucket, Key=self.name, UploadId=self.upload_id
            )
        except ClientError as err:
            if error_code(err) not in ("NoSuchUpload", "404"):
                raise


class S3ObjectClient(S3Locks):
    """The object-store calls of :mod:`~airflow_provider_pgbackup.storage.objects` on one S3 bucket."""

    min_part_size = MIN_PART_SIZE
    max_part_size = MAX_PART_SIZE
    max_parts = MAX_PARTS
    part_multiple = 1
    parallel_parts = True

    def __init__(self, bucket: str, settings: StorageSettings, s3: BaseClient | None = None) -> None:
        check_settings(settings)
        self.bucket = bucket
        self.settings = settings
        self.base_part_size = settings.part_size or DEFAULT_PART_SIZE
        self.location = S3Location(SCHEME, bucket, "")
        self.s3 = s3 if s3 is not None else get_s3_client(settings)
        self._bucket_checked = False

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"

    def _no_bucket(self) -> StoreNotFound:
        return StoreNotFound(
            f"bucket {self.bucket!r} of {self.location.uri} does not exist (check the name, the region and "
            f"connection {self.settings.aws_conn_id!r})"
        )

    def _check_bucket(self) -> None:
        from botocore.exceptions import ClientError

        if self._bucket_checked:
            return
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            if error_code(err) in ("404", "NoSuchBucket", "NotFound"):
                raise self._no_bucket() from err
            raise
        self._bucket_checked = True

    def _write_options(self, metadata: dict[str, str], content_type: str) -> dict[str, Any]:
        options: dict[str, Any] = {"Metadata": encode_metadata(metadata), "ContentType": content_type}
        if self.settings.storage_class:
            options["StorageClass"] = self.settings.storage_class
        if self.settings.kms_key_name:
            options["ServerSideEncryption"] = "aws:kms"
            options["SSEKMSKeyId"] = self.settings.kms_key_name
        return options

    def head(self, name: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            found = self.s3.head_object(Bucket=self.bucket, Key=name)
        except ClientError as err:
            if error_code(err) in ("404", "NoSuchKey", "NotFound"):
                self._check_bucket()
                return None
            raise
        return ObjectInfo(
            name, int(found["ContentLength"]), found["ETag"], found["LastModified"],
            decode_metadata(found.get("Metadata")),
        )  # fmt: skip

    def list(self, prefix: str, *, limit: int | None = None) -> list[ObjectInfo]:
        from botocore.exceptions import ClientError

        found: list[ObjectInfo] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        config = {"MaxItems": limit} if limit else {}
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig=config):
                for item in page.get("Contents", ()):
                    found.append(
                        ObjectInfo(item["Key"], int(item["Size"]), item["ETag"], item["LastModified"])
                    )
        except ClientError as err:
            if error_code(err) in ("NoSuchBucket", "404"):
                raise self._no_bucket() from err
            raise
        return found

    def start_upload(
        self, name: str, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> S3PartUpload:
        response = self.s3.create_multipart_upload(
            Bucket=self.bucket,
            Key=name,
            ChecksumAlgorithm=CHECKSUM,
            **self._write_options(metadata, content_type),
        )
        return S3PartUpload(self, name, response["UploadId"], create_only)

    def put(
        self, name: str, data: bytes, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> None:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self.s3.put_object(
                Bucket=self.bucket, Key=name, Body=data, ChecksumAlgorithm=CHECKSUM,
                **self._write_options(metadata, content_type), **extra,
            )  # fmt: skip
        except ClientError as err:
            if error_code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise ObjectConflictError(
                    f"{self.uri(name)} was created by someone else; not overwritten"
                ) from err
            raise

    def stream(self, name: str, etag: str, chunk_size: int) -> Iterator[bytes]:
        """The object's bytes if it still has ``etag`` (``If-Match``); S3's checksum is checked when whole."""
        from botocore.exceptions import ClientError

        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=name, IfMatch=etag, ChecksumMode="ENABLED")
        except ClientError as err:
            if error_code(err) in ("PreconditionFailed", "412"):
                raise ArtifactMismatchError(
                    f"{self.uri(name)} changed after it was first read (ETag {etag} is gone)"
                ) from err
            if error_code(err) in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{self.uri(name)} does not exist") from err
            raise
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def delete(self, name: str, etag: str) -> None:
        """Delete the object only if it still has ``etag``; a missing object is fine."""
        from botocore.exceptions import ClientError

        try:
            self.s3.delete_object(Bucket=self.bucket, Key=name, IfMatch=etag)
        except ClientError as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return
            if error_code(err) in ("PreconditionFailed", "412"):
                raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted") from err
            raise

    def copy(
        self, source: ObjectInfo, source_container: str, destination: str, *, metadata: dict[str, str]
    ) -> None:
        """Server-side, create-only copy of exactly ``source.etag``: a multipart upload of copied ranges."""
        if source.size == 0:
            self.put(
                destination, b"", metadata=metadata, content_type="application/octet-stream", create_only=True
            )
            return
        upload = self.start_upload(
            destination, metadata=metadata, content_type="application/octet-stream", create_only=True
        )
        try:
            for number, start in enumerate(range(0, source.size, COPY_PART_SIZE), start=1):
                end = min(start + COPY_PART_SIZE, source.size) - 1
                response = self.s3.upload_part_copy(
                    Bucket=self.bucket, Key=destination, UploadId=upload.upload_id, PartNumber=number,
                    CopySource={"Bucket": source_container, "Key": source.name},
                    CopySourceIfMatch=source.etag, CopySourceRange=f"bytes={start}-{end}",
                )  # fmt: skip
                upload.parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
            upload.complete()
        except BaseException:
            upload.abort()
            raise

    def set_metadata(self, name: str, etag: str, metadata: dict[str, str]) -> bool:
        """S3 metadata is fixed at creation (changing it rewrites the object): the manifest carries it."""
        return False
