"""GCS credentials, both paths: through the Google provider's GoogleBaseHook (installed in the test
environment) and, with that provider hidden, through the package's own subset.

No test here can exchange a token: that needs Google's token endpoint, which cannot be reached from
this sandbox. The tests therefore stop at the credentials object the storage client would use, and
check that it is what Google would be asked for (the impersonated account, its delegates, the source
key, the federation config): building it makes no network call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import impersonated_credentials
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account

from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.storage import StorageSettings
from airflow_provider_pgbackup.storage.gcs.client import (
    GCSCredentialsError,
    get_storage_client,
    google_provider_installed,
    make_client,
)

CHAIN = ("hop@relay-project.iam.gserviceaccount.com", "backup-writer@prod-project.iam.gserviceaccount.com")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def key() -> dict[str, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "source@key-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def gcp_conn(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    def define(conn_id: str = "gcp_provider", **extra: object) -> str:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps({"conn_type": "google_cloud_platform", "extra": extra}),
        )
        return conn_id

    return define


def test_the_google_provider_is_installed_for_these_tests() -> None:
    assert google_provider_installed()


def test_impersonation_chain_argument_reaches_the_credentials(gcp_conn, key) -> None:
    conn_id = gcp_conn(keyfile_dict=json.dumps(key), project="billing-project")
    client = get_storage_client(conn_id, CHAIN)
    credentials = client._credentials
    assert isinstance(credentials, impersonated_credentials.Credentials)
    assert credentials._target_principal == CHAIN[-1]
    assert list(credentials._delegates) == list(CHAIN[:-1])
    source = credentials._source_credentials
    assert isinstance(source, service_account.Credentials)
    assert source.service_account_email == key["client_email"]
    assert client.project == "billing-project"


def test_impersonation_chain_travels_in_storage_settings(gcp_conn, key) -> None:
    settings = StorageSettings(gcp_conn_id=gcp_conn(keyfile_dict=key), impersonation_chain=CHAIN[-1])
    assert settings.impersonation_chain == (CHAIN[-1],)
    credentials = make_client(settings)._credentials
    assert isinstance(credentials, impersonated_credentials.Credentials)
    assert credentials._target_principal == CHAIN[-1]
    assert not credentials._delegates


def test_impersonation_chain_from_the_connection_extra(gcp_conn, key) -> None:
    conn_id = gcp_conn(keyfile_dict=json.dumps(key), impersonation_chain=",".join(CHAIN))
    credentials = get_storage_client(conn_id)._credentials
    assert isinstance(credentials, impersonated_credentials.Credentials)
    assert credentials._target_principal == CHAIN[-1]


def test_anonymous_connection_gives_anonymous_credentials(gcp_conn) -> None:
    assert isinstance(get_storage_client(gcp_conn(is_anonymous=True))._credentials, AnonymousCredentials)


def test_unusable_key_through_the_provider_is_refused_without_key_material(gcp_conn, key) -> None:
    broken = dict(key, private_key=key["private_key"][:200] + "garbage")
    with pytest.raises(GCSCredentialsError) as err:
        get_storage_client(gcp_conn(keyfile_dict=json.dumps(broken)))
    assert "could not build credentials" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value)
    assert key["private_key"][40:80] not in str(err.value)


@pytest.mark.parametrize(
    "chain", ["not-an-email", ["ok@p.iam.gserviceaccount.com", "two words@x"], 42, ["a@b", ""]]
)
def test_bad_impersonation_chain_is_refused_naming_it(chain: object) -> None:
    with pytest.raises(InvalidOptionError, match="impersonation_chain"):
        StorageSettings(impersonation_chain=chain)  # type: ignore[arg-type]


# The path without the Google provider: a child interpreter in which importlib cannot find it.
HIDE_PROVIDER = """
import importlib.util, json, sys
find_spec = importlib.util.find_spec
def hide(name, *args, **kwargs):
    if name == "airflow.providers.google" or name.startswith("airflow.providers.google."):
        return None
    return find_spec(name, *args, **kwargs)
importlib.util.find_spec = hide
from airflow_provider_pgbackup.storage.gcs.client import GCSCredentialsError, get_storage_client
from airflow_provider_pgbackup.storage.gcs.client import google_provider_installed
result = {"installed": google_provider_installed()}
client = get_storage_client("gcp_plain")
result["credentials"] = type(client._credentials).__module__ + "." + type(client._credentials).__name__
result["email"] = client._credentials.service_account_email
result["project"] = client.project
try:
    get_storage_client("gcp_plain", ("x@p.iam.gserviceaccount.com",))
except GCSCredentialsError as err:
    result["impersonation"] = str(err)
result["hook_imported"] = "airflow.providers.google.common.hooks.base_google" in sys.modules
print(json.dumps(result))
"""


def test_without_the_google_provider_the_connection_subset_is_read_and_impersonation_refused(key) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"}
    env["AIRFLOW_CONN_GCP_PLAIN"] = json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(key)}}
    )
    out = subprocess.run(
        [sys.executable, "-c", HIDE_PROVIDER],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["installed"] is False
    assert result["credentials"] == "google.oauth2.service_account.Credentials"
    assert result["email"] == key["client_email"]
    assert result["project"] == "key-project"
    assert "needs apache-airflow-providers-google" in result["impersonation"]
    assert "airflow-provider-pgbackup[google]" in result["impersonation"]
    assert result["hook_imported"] is False  # GoogleBaseHook was never used
    assert key["private_key"][40:80] not in out.stdout + out.stderr


def test_every_gcs_surface_takes_a_templated_impersonation_chain() -> None:
    from airflow_provider_pgbackup.operators.freshness import PgBackupFreshnessOperator
    from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
    from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
    from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
    from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
    from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator
    from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator

    chain = "{{ var.value.backup_sa }}"
    operators = [
        PgDumpOperator(task_id="a", output_path="gs://pgbackup-b/x.dump", impersonation_chain=chain),
        PgDumpAllOperator(task_id="b", output_path="gs://pgbackup-b/x.sql", impersonation_chain=chain),
        PgRestoreOperator(task_id="c", artifact_path="gs://pgbackup-b/x.dump", impersonation_chain=chain),
        PgBackupRetentionOperator(task_id="d", location="gs://pgbackup-b/p", impersonation_chain=chain),
        PgBackupArtifactSensor(task_id="e", path="gs://pgbackup-b/x.dump", impersonation_chain=chain),
        PgBackupToGCSOperator(
            task_id="f", source_path="/x.dump", bucket="pgbackup-b", impersonation_chain=chain
        ),
        PgBackupFreshnessOperator(
            task_id="g", location="gs://pgbackup-b/p", max_age=60, impersonation_chain=chain
        ),
        PgBackupUploadOperator(
            task_id="h", source_path="/x.dump", destination="gs://pgbackup-b/p", impersonation_chain=chain
        ),
    ]
    for operator in operators:
        assert "impersonation_chain" in operator.template_fields, type(operator).__name__
        assert operator.impersonation_chain == chain


def test_the_deferred_sensor_hands_its_impersonation_chain_to_the_trigger() -> None:
    from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor

    sensor = PgBackupArtifactSensor(task_id="e", path="gs://pgbackup-b/x.dump", impersonation_chain=CHAIN[-1])
    _, kwargs = sensor._trigger().serialize()
    assert kwargs["impersonation_chain"] == [CHAIN[-1]]
