"""Bad input never ends in a traceback (issue 12, item 13): every value a user can give an operator, and
every JSON a manifest can hold, fails with the provider's own clear error naming the value.

``hypothesis`` draws arbitrary values (None, numbers, NaN, strings, lists, dicts, nested mixtures) for
one argument at a time; the operator is built with them and asked to ``validate()`` (what ``execute``
runs first, before any subprocess or network call). Nothing here touches a server: the point is that
validation alone catches the value.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_pgbackup.manifest import Manifest, ManifestError
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.operators.retention import PgBackupRetentionOperator
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from airflow_provider_pgbackup.transfers.backup_to_gcs import PgBackupToGCSOperator
from airflow_provider_pgbackup.transfers.backup_upload import PgBackupUploadOperator

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        ["", "/", "..", "gs://", "s3://b/x", "/backups/../x", "{{ ds }}", "none", "true", "\n", "\x00"]
    ),
    st.just(datetime.timedelta(seconds=-5)),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)

# operator class, the arguments that make it valid, the arguments to vary
CASES: list[tuple[type, dict[str, Any], tuple[str, ...]]] = [
    (
        PgDumpOperator,
        {"output_path": "/backups/db.dump"},
        ("output_path", "postgres_conn_id", "database", "format", "compression", "jobs", "schemas",
         "exclude_schemas", "tables", "exclude_tables", "lock_wait_timeout", "record", "record_row_counts",
         "record_checksums", "statistics", "extra_args", "pg_bin_dir", "overwrite", "gcp_conn_id",
         "gcs_chunk_size", "file_mode", "aws_conn_id", "wasb_conn_id", "lock_for", "lock_mode",
         "lock_legal_hold"),
    ),
    (
        PgDumpOperator,
        {"output_path": "s3://my-bucket/db.dump", "lock_for": "7d"},
        ("lock_for", "lock_mode", "lock_legal_hold"),
    ),
    (
        PgDumpAllOperator,
        {"output_path": "/backups/all.sql"},
        ("output_path", "postgres_conn_id", "mode", "no_role_passwords", "compression", "lock_wait_timeout",
         "extra_args", "pg_bin_dir", "overwrite", "gcp_conn_id", "gcs_chunk_size", "file_mode", "aws_conn_id",
         "wasb_conn_id"),
    ),
    (
        PgRestoreOperator,
        {"artifact_path": "/backups/db.dump"},
        ("artifact_path", "postgres_conn_id", "database", "create_database", "drop_after", "jobs", "no_owner",
         "no_acl", "allow_non_empty_database", "compare_row_counts", "compare_content", "verify_contents",
         "pg_bin_dir", "gcp_conn_id", "transaction_size", "restore_statistics", "aws_conn_id",
         "wasb_conn_id"),
    ),
    (
        PgBackupArtifactSensor,
        {"path": "/backups/db.dump"},
        ("path", "gcp_conn_id", "verify_checksum", "verify_contents", "verify_tables", "min_size_bytes",
         "max_age", "pg_bin_dir"),
    ),
    (
        PgBackupRetentionOperator,
        {"location": "/backups"},
        ("location", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "dry_run", "incomplete_grace",
         "max_newest_age", "verify_newest", "timezone", "gcp_conn_id", "retry_timeout", "aws_conn_id",
         "wasb_conn_id", "bypass_governance", "shrink_guard"),
    ),
    (
        PgBackupToGCSOperator,
        {"source_path": "/backups/db.dump", "bucket": "my-bucket"},
        ("source_path", "bucket", "prefix", "gcp_conn_id", "chunk_size", "storage_class", "kms_key_name",
         "retry_timeout", "progress_interval", "delete_local_copy"),
    ),
    (
        PgBackupUploadOperator,
        {"source_path": "/backups/db.dump", "destination": "s3://my-bucket/pg"},
        ("source_path", "destination", "gcp_conn_id", "aws_conn_id", "wasb_conn_id", "chunk_size",
         "storage_class", "kms_key_name", "encryption_scope", "retry_timeout", "progress_interval",
         "delete_local_copy", "lock_for", "lock_mode", "lock_legal_hold", "shrink_guard",
         "shrink_acknowledged"),
    ),
]  # fmt: skip
ARGUMENTS = [(cls, base, name) for cls, base, names in CASES for name in names]


@pytest.mark.parametrize(
    ("cls", "base", "name"), ARGUMENTS, ids=[f"{c.__name__}.{n}" for c, _, n in ARGUMENTS]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
def test_any_value_of_any_argument_is_accepted_or_refused_by_name(
    cls: type, base: dict, name: str, value: Any
) -> None:
    error: InvalidOptionError | None = None
    try:
        operator = cls(task_id="t", **{**base, name: value})
        operator.validate()
    except InvalidOptionError as err:  # anything else (TypeError, KeyError, a bare ValueError...) fails
        error = err
    if error is not None:
        assert type(error) is InvalidOptionError
        assert str(error)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
VALID = {
    "kind": "pg_dump", "artifact": "db.dump", "format": "custom", "compression": "gzip:6",
    "database": "shop", "server_version": "18.6", "server_version_num": 180006, "client_tool": "pg_dump",
    "client_version": "18.6",
    "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:01:00+00:00",
    "duration_seconds": 60.0, "size_bytes": 10, "sha256": "0" * 64, "schema_version": 2,
    "files": None, "row_counts": [{"schema": "s", "table": "t", "rows": 1}], "options": {}, "content": None,
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(data=JSON)
def test_arbitrary_json_is_read_or_refused_as_a_manifest_error(data: Any) -> None:
    with contextlib.suppress(ManifestError):  # anything else fails the test
        Manifest.from_json(json.dumps(data))


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(sorted(VALID)), value=JSON)
def test_a_manifest_field_of_any_wrong_type_is_refused_naming_it(field: str, value: Any) -> None:
    error: ManifestError | None = None
    try:
        manifest = Manifest.from_dict({**VALID, field: value})
    except ManifestError as err:  # anything else fails the test
        error = err
    else:
        json.dumps(manifest.to_dict())
    if error is not None:
        assert field in str(error) or "schema_version" in str(error), error


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schemas": None}, "schema patterns None must be a list"),
        ({"lock_wait_timeout": float("nan")}, "lock_wait_timeout nan must be a positive, finite number"),
        ({"lock_wait_timeout": 1.8e305}, "lock_wait_timeout 1.8e.305 is longer than PostgreSQL allows"),
        ({"lock_wait_timeout": "25d"}, "lock_wait_timeout '25d' is longer than PostgreSQL allows"),
        ({"extra_args": 5}, "extra_args 5 must be a list of flags"),
        ({"database": 5}, "database 5 must be a non-empty string"),
        ({"pg_bin_dir": "bin"}, "pg_bin_dir 'bin' must be the absolute path"),
    ],
)
def test_the_values_that_used_to_raise_type_errors_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message.replace("(", r"\(")):
        PgDumpOperator(task_id="t", output_path="/backups/db.dump", **kwargs).validate()


def test_retry_timeout_as_text_and_client_version_as_a_number_are_named() -> None:
    with pytest.raises(InvalidOptionError, match="retry_timeout '300' must be a positive number of seconds"):
        PgBackupRetentionOperator(task_id="t", location="gs://bucket/pg", retry_timeout="300")
    with pytest.raises(ManifestError, match="manifest field 'client_version' must be a string, not 16"):
        Manifest.from_dict({**VALID, "client_version": 16})
