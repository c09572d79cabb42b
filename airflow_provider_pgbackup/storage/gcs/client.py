"""A ``google-cloud-storage`` client from an Airflow ``google_cloud_platform`` connection, ADC or an emulator.

``apache-airflow-providers-google`` is not needed: the connection's extras are read here. Supported
extras (each with or without the ``extra__google_cloud_platform__`` prefix):

- ``key_path``: path of a service-account JSON key file;
- ``keyfile_dict``: the key's JSON (a string or an object);
- ``project``: the project for bucket operations (else the key's or ADC's project);
- ``scope``: comma-separated OAuth scopes (default: ``devstorage.read_write``);
- ``emulator_host``: a GCS emulator endpoint (``http://127.0.0.1:4443``), used with anonymous credentials.

Without a connection of that id (and for the default id), Application Default Credentials are used.
``STORAGE_EMULATOR_HOST`` in the environment wins over everything: tests and local runs point the
provider at an emulator with it. Key content is masked in logs and never appears in an exception.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

from airflow_provider_pgbackup.storage.base import DEFAULT_GCP_CONN_ID, CredentialsError

if TYPE_CHECKING:  # the Google libraries cost ~20 MiB and ~1 s to import: only GCS work pays for them
    from google.auth.credentials import Credentials
    from google.cloud import storage

EXTRA_PREFIX = "extra__google_cloud_platform__"
DEFAULT_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
CLIENT_INFO_USER_AGENT = "airflow-provider-pgbackup"


class GCSCredentialsError(CredentialsError, AirflowException):
    """The connection's credentials cannot be used; the message never contains key material."""


def _extra(extras: dict[str, Any], name: str) -> Any:
    value = extras.get(name)
    if value in (None, ""):
        value = extras.get(EXTRA_PREFIX + name)
    return None if value in (None, "") else value


def _normalise_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return endpoint


def emulator_client(endpoint: str, *, project: str | None = None) -> storage.Client:
    """A client for a GCS emulator at ``endpoint`` (``http://host:port``) with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=project or "pgbackup-emulator",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": _normalise_endpoint(endpoint)},
    )


def _service_account_credentials(
    conn_id: str, key_path: Any, keyfile_dict: Any, scopes: list[str]
) -> Credentials:
    from airflow.sdk.log import mask_secret
    from google.oauth2 import service_account

    if keyfile_dict is not None:
        info: Any = keyfile_dict
        if isinstance(keyfile_dict, str):
            mask_secret(keyfile_dict)
            try:
                info = json.loads(keyfile_dict)
            except ValueError:
                raise GCSCredentialsError(
                    f"connection {conn_id!r}: extra 'keyfile_dict' is not valid JSON"
                ) from None
        if not isinstance(info, dict):
            raise GCSCredentialsError(f"connection {conn_id!r}: extra 'keyfile_dict' must be a JSON object")
        if info.get("private_key"):
            mask_secret(str(info["private_key"]))
        try:
            return service_account.Credentials.from_service_account_info(info, scopes=scopes)  # type: ignore[no-any-return,no-untyped-call]
        except (ValueError, KeyError, TypeError) as err:
            # The library's message can quote fields; only its type is passed on.
            raise GCSCredentialsError(
                f"connection {conn_id!r}: extra 'keyfile_dict' is not a usable service-account key "
                f"({type(err).__name__})"
            ) from None
    path = str(key_path)
    if not os.path.isfile(path):
        raise GCSCredentialsError(f"connection {conn_id!r}: key_path {path!r} is not a readable file")
    try:
        return service_account.Credentials.from_service_account_file(path, scopes=scopes)  # type: ignore[no-any-return,no-untyped-call]
    except (ValueError, KeyError, TypeError) as err:
        raise GCSCredentialsError(
            f"connection {conn_id!r}: key_path {path!r} is not a usable service-account key "
            f"({type(err).__name__})"
        ) from None


def get_storage_client(gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID) -> storage.Client:
    """Build a storage client: emulator, then the connection's key, then Application Default Credentials.

    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection id; ``None`` uses ADC directly.
        A missing connection with the default id also falls back to ADC; any other missing id is an error.
    """
    env_emulator = os.environ.get(EMULATOR_ENV)
    extras: dict[str, Any] = {}
    if gcp_conn_id:
        try:
            conn = BaseHook.get_connection(gcp_conn_id)
        except AirflowNotFoundException:
            if gcp_conn_id != DEFAULT_GCP_CONN_ID and not env_emulator:
                raise
        else:
            if conn.conn_type not in ("google_cloud_platform", "gcpcloudsql", "gcp"):
                raise GCSCredentialsError(
                    f"connection {gcp_conn_id!r} has type {conn.conn_type!r}; "
                    "a 'google_cloud_platform' connection is needed"
                )
            extras = dict(conn.extra_dejson)
    project = _extra(extras, "project")
    emulator = env_emulator or _extra(extras, "emulator_host")
    if emulator:
        return emulator_client(str(emulator), project=str(project) if project else None)
    scope_text = _extra(extras, "scope")
    scopes = (
        [s.strip() for s in str(scope_text).split(",") if s.strip()] if scope_text else list(DEFAULT_SCOPES)
    )
    key_path = _extra(extras, "key_path")
    keyfile_dict = _extra(extras, "keyfile_dict")
    credentials: Credentials
    if key_path is not None or keyfile_dict is not None:
        credentials = _service_account_credentials(str(gcp_conn_id), key_path, keyfile_dict, scopes)
        project = project or getattr(credentials, "project_id", None)
    else:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, adc_project = google.auth.default(scopes=scopes)  # type: ignore[no-untyped-call]
        except DefaultCredentialsError as err:
            raise GCSCredentialsError(
                f"no key in connection {gcp_conn_id!r} and no Application Default Credentials: {err}"
            ) from err
        project = project or adc_project
    from google.cloud import storage

    return storage.Client(project=str(project) if project else None, credentials=credentials)
