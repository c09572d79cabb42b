"""A ``google-cloud-storage`` client from an Airflow ``google_cloud_platform`` connection, ADC or an emulator.

Two paths, chosen by what is installed:

- **With** ``apache-airflow-providers-google`` (the ``[google]`` extra), credentials come from its
  ``GoogleBaseHook``, exactly as Google's own operators get them: ``key_path``, ``keyfile_dict``,
  ``key_secret_name`` (Secret Manager), ``credential_config_file`` (workload identity federation),
  ``is_anonymous``, the connection's ``impersonation_chain`` extra or the task's
  ``impersonation_chain`` argument, ``quota_project_id``, and ADC when the connection has no key.
- **Without** it, the connection's extras are read here (a subset, no impersonation; an
  ``impersonation_chain`` is refused with a message naming the extra to install).

Either way an emulator (``STORAGE_EMULATOR_HOST`` or the ``emulator_host`` extra) wins, and a missing
connection with the default id means ADC. The subset read without the provider (each extra with or
without the ``extra__google_cloud_platform__`` prefix):

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
import urllib.parse
from typing import TYPE_CHECKING, Any

from airflow_provider_pgbackup.compat import AirflowException, AirflowNotFoundException, BaseHook
from airflow_provider_pgbackup.storage.base import DEFAULT_GCP_CONN_ID, CredentialsError, StorageSettings
from airflow_provider_pgbackup.storage.gcs.location import GCSLocation, check_settings

if TYPE_CHECKING:  # the Google libraries cost ~20 MiB and ~1 s to import: only GCS work pays for them
    from google.api_core.retry import Retry
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
    from google.oauth2 import service_account

    from airflow_provider_pgbackup.compat import mask_secret

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


GOOGLE_PROVIDER = "airflow.providers.google"


def google_provider_installed() -> bool:
    """Whether ``apache-airflow-providers-google`` can be imported (the ``[google]`` extra)."""
    import importlib.util

    try:
        return importlib.util.find_spec(GOOGLE_PROVIDER) is not None
    except (ImportError, ValueError):
        return False


def _provider_credentials(
    gcp_conn_id: str | None, impersonation_chain: tuple[str, ...] | None, connection_exists: bool
) -> tuple[Credentials, str | None]:
    """Credentials and project the Google provider's way (GoogleBaseHook); builds, never exchanges tokens."""
    if connection_exists and gcp_conn_id:
        from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

        hook = GoogleBaseHook(
            gcp_conn_id=gcp_conn_id, impersonation_chain=list(impersonation_chain or ()) or None
        )
        return hook.get_credentials_and_project_id()
    # No connection (default id, or None): ADC, impersonated when asked, as the provider does it.
    from airflow.providers.google.cloud.utils.credentials_provider import (
        _get_target_principal_and_delegates,
        get_credentials_and_project_id,
    )

    target, delegates = _get_target_principal_and_delegates(list(impersonation_chain or ()) or None)
    credentials, project = get_credentials_and_project_id(
        scopes=list(DEFAULT_SCOPES), target_principal=target, delegates=delegates
    )
    return credentials, project


def emulator_endpoint(gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID) -> str | None:
    """The emulator a client of ``gcp_conn_id`` would use (``STORAGE_EMULATOR_HOST``, else the
    connection's ``emulator_host`` extra), or None for the real GCS. Reads no credential."""
    if os.environ.get(EMULATOR_ENV):
        return os.environ[EMULATOR_ENV]
    if not gcp_conn_id:
        return None
    try:
        conn = BaseHook.get_connection(gcp_conn_id)
    except AirflowNotFoundException:
        return None
    emulator = _extra(dict(conn.extra_dejson), "emulator_host")
    return str(emulator) if emulator else None


def object_url(location: GCSLocation, settings: StorageSettings) -> str:
    """Where a person looks at the object: its Cloud Console page, or on an emulator its JSON
    metadata (``/storage/v1/b/<bucket>/o/<name>``: size, checksums, the provider's metadata)."""
    emulator = emulator_endpoint(settings.gcp_conn_id)
    if emulator is None:
        return location.console_url
    name = urllib.parse.quote(location.name, safe="")
    return f"{_normalise_endpoint(emulator)}/storage/v1/b/{location.bucket}/o/{name}"


def get_storage_client(
    gcp_conn_id: str | None = DEFAULT_GCP_CONN_ID,
    impersonation_chain: tuple[str, ...] | None = None,
) -> storage.Client:
    """Build a storage client: emulator, then the connection's credentials, then ADC.

    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection id; ``None`` uses ADC directly.
        A missing connection with the default id also falls back to ADC; any other missing id is an error.
    :param impersonation_chain: service account(s) to impersonate (needs the Google provider).
    """
    env_emulator = os.environ.get(EMULATOR_ENV)
    extras: dict[str, Any] = {}
    connection_exists = False
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
            connection_exists = True
    project = _extra(extras, "project")
    emulator = env_emulator or _extra(extras, "emulator_host")
    if emulator:
        return emulator_client(str(emulator), project=str(project) if project else None)
    from google.cloud import storage

    key_file = _extra(extras, "key_path")
    if key_file is not None and not os.path.isfile(str(key_file)):  # the same words on both paths
        raise GCSCredentialsError(
            f"connection {gcp_conn_id!r}: key_path {str(key_file)!r} is not a readable file"
        )
    if google_provider_installed():
        try:
            from_provider, provider_project = _provider_credentials(
                gcp_conn_id, impersonation_chain, connection_exists
            )
        except Exception as err:
            # The provider's messages can quote key fields: only the type is passed on.
            raise GCSCredentialsError(
                f"connection {gcp_conn_id!r}: the Google provider could not build credentials from it "
                f"({type(err).__name__}); check key_path / keyfile_dict / key_secret_name / "
                "credential_config_file"
            ) from None
        project = project or provider_project
        return storage.Client(project=str(project) if project else None, credentials=from_provider)
    if impersonation_chain or _extra(extras, "impersonation_chain"):
        raise GCSCredentialsError(
            f"impersonation_chain (connection {gcp_conn_id!r}) needs apache-airflow-providers-google: "
            "pip install 'airflow-provider-pgbackup[google]'"
        )
    for name in ("key_secret_name", "credential_config_file"):
        if _extra(extras, name) is not None:
            raise GCSCredentialsError(
                f"connection {gcp_conn_id!r}: extra {name!r} needs apache-airflow-providers-google: "
                "pip install 'airflow-provider-pgbackup[google]'"
            )
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
    return storage.Client(project=str(project) if project else None, credentials=credentials)


def retry(settings: StorageSettings) -> Retry:
    """Retry transient errors (429, 5xx, connection errors) with exponential backoff."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    policy: Retry = DEFAULT_RETRY.with_delay(initial=0.5, multiplier=2.0, maximum=30.0)
    return policy.with_timeout(settings.retry_timeout)


def make_client(settings: StorageSettings) -> storage.Client:
    check_settings(settings)
    chain = settings.impersonation_chain
    return get_storage_client(settings.gcp_conn_id, tuple(chain) if chain else None)
