"""A ``BlobServiceClient`` from an Airflow ``wasb`` connection (through the Microsoft Azure provider's
``WasbHook``) or the environment, and :class:`AzureObjectClient`, the object-store calls on one container.

``WasbHook`` resolves the connection (connection string, account key, SAS token, service principal,
managed identity / ``DefaultAzureCredential``...). Without a connection: ``AZURE_STORAGE_CONNECTION_STRING``,
else ``AZURE_STORAGE_ACCOUNT_URL`` with ``DefaultAzureCredential``. Keys are never read or logged here.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.compat import AirflowException, AirflowNotFoundException, BaseHook
from airflow_provider_pgbackup.storage.azure.location import SCHEME, AzureLocation, check_settings
from airflow_provider_pgbackup.storage.azure.locks import AzureLocks
from airflow_provider_pgbackup.storage.base import (
    DEFAULT_WASB_CONN_ID,
    ArtifactMismatchError,
    CredentialsError,
    EntryChanged,
    ObjectConflictError,
    StorageError,
    StorageSettings,
    StoreNotFound,
)
from airflow_provider_pgbackup.storage.objects import ObjectInfo, decode_metadata, encode_metadata
from airflow_provider_pgbackup.storage.objects.backend import endpoint_object_url

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_ENV = "AZURE_STORAGE_ACCOUNT_URL"
MIN_PART_SIZE = 1024 * 1024
MAX_PART_SIZE = 4000 * 1024 * 1024
MAX_PARTS = 50_000
DEFAULT_PART_SIZE = 4 * 1024 * 1024  # as the Azure SDK's max_block_size
#: azure-core's HTTP logging policy logs request headers at INFO: kept at WARNING, as WasbHook does.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


class AzureCredentialsError(CredentialsError, AirflowException):
    """No usable credentials (fails now, as every ``CredentialsError``); never contains key material."""


def _retries(retry_timeout: float) -> int:
    """Retries of the storage SDK's exponential policy (15 s + 3^n s apart) that fit in ``retry_timeout``."""
    count, waited = 0, 0.0
    while count < 10 and waited + 15 + 3**count <= retry_timeout:
        waited += 15 + 3**count
        count += 1
    return count


def get_blob_service(settings: StorageSettings) -> BlobServiceClient:
    """The ``wasb_conn_id`` connection through ``WasbHook``; else the environment (see the module doc).

    A missing connection with the default id (``wasb_default``) falls back to the environment; any
    other missing id is an error.
    """
    conn_id = settings.wasb_conn_id
    if conn_id:
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            if conn_id != DEFAULT_WASB_CONN_ID:
                raise
            conn = None
        if conn is not None:
            if conn.conn_type != "wasb":
                raise AzureCredentialsError(
                    f"connection {conn_id!r} has type {conn.conn_type!r}; a 'wasb' connection is needed"
                )
            try:
                from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
            except ImportError:
                raise AzureCredentialsError(
                    f"connection {conn_id!r} needs the Microsoft Azure provider: pip install "
                    "'airflow-provider-pgbackup[microsoft-azure]'"
                ) from None
            client: BlobServiceClient = WasbHook(wasb_conn_id=conn_id).get_conn()
            return client
    from azure.storage.blob import BlobServiceClient

    connection_string = os.environ.get(CONNECTION_STRING_ENV)
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    account_url = os.environ.get(ACCOUNT_URL_ENV)
    if account_url:
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(account_url, credential=DefaultAzureCredential())
    raise AzureCredentialsError(
        f"no wasb connection {conn_id!r} and neither {CONNECTION_STRING_ENV} nor {ACCOUNT_URL_ENV} is set: "
        "az:// needs a storage account"
    )


#: The blob endpoints of Azure's clouds: an account there has a portal page, not a link of ours.
AZURE_BLOB_HOSTS = (".blob.core.windows.net", ".blob.core.chinacloudapi.cn", ".blob.core.usgovcloudapi.net")


def object_url(location: AzureLocation, settings: StorageSettings) -> str | None:
    """Where a person looks at the blob: None on Azure itself (the portal's pages need the subscription
    and resource group, unknown here); on another endpoint (Azurite, Azure Stack...) the blob's URL
    there, without the account key or a SAS token."""
    endpoint = str(get_blob_service(settings).url or "")
    host = (urllib.parse.urlsplit(endpoint).hostname or "").lower()
    if not host or host.endswith(AZURE_BLOB_HOSTS):
        return location.console_url
    return endpoint_object_url(endpoint, location.container, location.name)


def _to_azure(metadata: dict[str, str]) -> dict[str, str]:
    """Azure metadata names are C# identifiers: ``backup-kind`` is stored as ``backup_kind``."""
    return {k.replace("-", "_"): v for k, v in encode_metadata(metadata).items()}


def _from_azure(metadata: dict[str, str] | None) -> dict[str, str]:
    return {k.replace("_", "-"): v for k, v in decode_metadata(metadata).items()}


class AzurePartUpload:
    """Staged blocks (MD5-checked by the service), committed create-only (``If-None-Match: *``).

    Uncommitted blocks are invisible and expire after a week; :meth:`abort` has nothing to send.
    """

    def __init__(self, owner: AzureObjectClient, name: str, metadata: dict[str, str], content_type: str,
                 create_only: bool) -> None:  # fmt: skip
        self.owner = owner
        self.name = name
        self.metadata = metadata
        self.content_type = content_type
        self.create_only = create_only
        self.prefix = secrets.token_hex(8)
        self.blob = owner.container.get_blob_client(name)
        self.blocks: list[str] = []

    def send(self, number: int, data: bytes) -> None:
        block_id = f"{self.prefix}-{number:06d}"
        self.blob.stage_block(
            block_id, data, length=len(data), validate_content=True, **self.owner.write_options()
        )
        self.blocks.append(block_id)

    def complete(self) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.storage.blob import BlobBlock, ContentSettings

        extra: dict[str, Any] = {"match_condition": MatchConditions.IfMissing} if self.create_only else {}
        try:
            self.blob.commit_block_list(
                [BlobBlock(block_id=b) for b in sorted(self.blocks)], metadata=_to_azure(self.metadata),
                content_settings=ContentSettings(content_type=self.content_type),
                **self.owner.tier(), **self.owner.write_options(), **extra,
            )  # fmt: skip
        except (ResourceExistsError, ResourceModifiedError) as err:
            raise ObjectConflictError(
                f"{self.owner.uri(self.name)} was created by someone else during the upload; not overwritten"
            ) from err

    def abort(self) -> None:
        """Nothing to send: staged blocks that are never committed expire on their own."""


class AzureObjectClient(AzureLocks):
    """The object-store calls of :mod:`~airflow_provider_pgbackup.storage.objects` on one container."""

    min_part_size = MIN_PART_SIZE
    max_part_size = MAX_PART_SIZE
    max_parts = MAX_PARTS
    part_multiple = 1
    parallel_parts = True

    def __init__(self, container: str, settings: StorageSettings, service: BlobServiceClient | None = None):
        check_settings(settings)
        self.settings = settings
        self.base_part_size = settings.part_size or DEFAULT_PART_SIZE
        self.location = AzureLocation(SCHEME, container, "")
        self.service = service if service is not None else get_blob_service(settings)
        self.container = self.service.get_container_client(container)
        self._options: dict[str, Any] = {"retry_total": _retries(settings.retry_timeout)}

    def uri(self, name: str) -> str:
        return f"az://{self.location.container}/{name}"

    def write_options(self) -> dict[str, Any]:
        scope = self.settings.encryption_scope
        return {**self._options, **({"encryption_scope": scope} if scope else {})}

    def tier(self) -> dict[str, Any]:
        from azure.storage.blob import StandardBlobTier

        tier = self.settings.storage_class
        return {"standard_blob_tier": StandardBlobTier(tier)} if tier else {}

    def _no_container(self, err: Exception) -> StoreNotFound:
        return StoreNotFound(
            f"container {self.location.container!r} of {self.location.uri} does not exist (check the name "
            f"and the account of connection {self.settings.wasb_conn_id!r})"
        )

    def _missing(self, err: Exception) -> None:
        """Raise StoreNotFound when ``err`` says the container is missing; return for a missing blob."""
        if getattr(err, "error_code", None) == "ContainerNotFound":
            raise self._no_container(err) from err

    def head(self, name: str) -> ObjectInfo | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self.container.get_blob_client(name).get_blob_properties(**self._options)
        except ResourceNotFoundError as err:
            self._missing(err)
            if not self.container.exists(**self._options):
                raise self._no_container(err) from err
            return None
        return ObjectInfo(name, int(found.size), found.etag, found.last_modified, _from_azure(found.metadata))

    def list(self, prefix: str, *, limit: int | None = None) -> list[ObjectInfo]:
        from azure.core.exceptions import ResourceNotFoundError

        found: list[ObjectInfo] = []
        try:
            for blob in self.container.list_blobs(
                name_starts_with=prefix, include=["metadata"], **self._options
            ):
                found.append(
                    ObjectInfo(
                        blob.name, int(blob.size), blob.etag, blob.last_modified, _from_azure(blob.metadata)
                    )
                )
                if limit is not None and len(found) >= limit:
                    break
        except ResourceNotFoundError as err:
            raise self._no_container(err) from err
        return found

    def start_upload(
        self, name: str, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> AzurePartUpload:
        return AzurePartUpload(self, name, metadata, content_type, create_only)

    def put(
        self, name: str, data: bytes, *, metadata: dict[str, str], content_type: str, create_only: bool
    ) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        condition: dict[str, Any] = (
            {"match_condition": MatchConditions.IfMissing} if create_only else {"overwrite": True}
        )
        try:
            self.container.get_blob_client(name).upload_blob(
                data, metadata=_to_azure(metadata), validate_content=True,
                content_settings=ContentSettings(content_type=content_type),
                **self.tier(), **self.write_options(), **condition,
            )  # fmt: skip
        except (ResourceExistsError, ResourceModifiedError) as err:
            raise ObjectConflictError(
                f"{self.uri(name)} was created by someone else; not overwritten"
            ) from err
        except ResourceNotFoundError as err:
            raise self._no_container(err) from err

    def stream(self, name: str, etag: str, chunk_size: int) -> Iterator[bytes]:
        """The blob's bytes if it still has ``etag``; every range is MD5-checked (``validate_content``)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            downloader = self.container.get_blob_client(name).download_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified, validate_content=True,
                max_concurrency=1, **self._options,
            )  # fmt: skip
            yield from downloader.chunks()
        except ResourceModifiedError as err:
            if self.head(name) is None:  # Azurite answers a deleted blob's ETag condition with 412
                raise FileNotFoundError(f"{self.uri(name)} does not exist") from err
            raise ArtifactMismatchError(
                f"{self.uri(name)} changed after it was first read (ETag {etag} is gone)"
            ) from err
        except ResourceNotFoundError as err:
            raise FileNotFoundError(f"{self.uri(name)} does not exist") from err

    def delete(self, name: str, etag: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            self.container.get_blob_client(name).delete_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified, **self._options
            )
        except ResourceNotFoundError:
            return
        except ResourceModifiedError as err:
            if self.head(name) is None:  # deleted by another run since it was listed (Azurite says 412)
                return
            raise EntryChanged(f"{self.uri(name)} changed since it was listed; not deleted") from err

    def copy(
        self, source: ObjectInfo, source_container: str, destination: str, *, metadata: dict[str, str]
    ) -> None:
        """Server-side, create-only copy of exactly ``source.etag`` within the account (polled to the end)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        source_url = self.service.get_blob_client(source_container, source.name).url
        blob = self.container.get_blob_client(destination)
        try:
            blob.start_copy_from_url(
                source_url, metadata=_to_azure(metadata), match_condition=MatchConditions.IfMissing,
                source_etag=source.etag, source_match_condition=MatchConditions.IfNotModified,
                **self.tier(), **self._options,
            )  # fmt: skip
        except ResourceExistsError as err:
            raise ObjectConflictError(
                f"{self.uri(destination)} was created by someone else; not overwritten"
            ) from err
        except ResourceModifiedError as err:
            raise ArtifactMismatchError(f"az://{source_container}/{source.name} changed; not copied") from err
        deadline = time.monotonic() + max(self.settings.retry_timeout, 60.0) * 10
        while True:
            status = blob.get_blob_properties(**self._options).copy.status
            if status == "success":
                return
            if status != "pending" or time.monotonic() > deadline:
                raise StorageError(f"copy to {self.uri(destination)} ended with status {status!r}")
            time.sleep(0.5)

    def set_metadata(self, name: str, etag: str, metadata: dict[str, str]) -> bool:
        from azure.core import MatchConditions

        self.container.get_blob_client(name).set_blob_metadata(
            _to_azure(metadata), etag=etag, match_condition=MatchConditions.IfNotModified, **self._options
        )
        return True
