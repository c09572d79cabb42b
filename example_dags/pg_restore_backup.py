"""Restore one chosen backup into a new database and keep it: what "Restore..." on the Backups page runs.

Not a drill: the restored database stays. The run

1. **verifies** the backup where it is (size, sha256, ``pg_restore --list`` / the SQL trailer) and
   restores the very bytes it verified;
2. **creates** the target database (it must not exist yet: nothing existing is dropped, overwritten or
   added to). Restoring into an existing database must be asked for (**Existing database**), and
   even then one that holds tables is refused unless **Allow a non-empty database** is on, and the
   database the backup was taken from (the same server, by its ``system_identifier``, and the same
   name) unless **Allow the source database** is on;
3. restores all of it, or only the **Tables** / **Schemas** given (custom, directory and tar archives;
   pg_restore's ``--table`` / ``--schema``: exact names; the schemas are created first);
4. **compares** what it restored with the content the dump recorded in its own snapshot (rows and
   checksums of every restored table, sequences, large objects and the schema inventory; for a subset,
   the rows and checksums of its tables): the run ends green only when they are **IDENTICAL**, and
   fails naming each difference otherwise.

Nothing is ever dropped, also when a step fails: a half-restored new database stays for inspection
(drop it yourself). The verdict is kept as the XCom ``pgbackup_restore`` and, when identical, as an
event of the asset ``pgbackup_restores``: the Backups page shows it beside the backup.

Triggered by the page, or by hand (the form asks for every field); it has no schedule.
"""

from __future__ import annotations

import datetime

from airflow.sdk import DAG, Asset, Param

from airflow_provider_pgbackup.lineage import CATALOGUE_GROUP
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator

#: The restores' verdicts (an event when the restored database is identical to the backup).
RESTORES = Asset(name="pgbackup_restores", group=CATALOGUE_GROUP)

with DAG(
    dag_id="pg_restore_backup",
    description="Verify one backup, restore it (or some tables) into a new database, prove it IDENTICAL",
    schedule=None,
    catchup=False,
    tags=["postgres", "backup", "restore"],
    doc_md=__doc__,
    default_args={"retries": 0},  # a restore that failed needs a person, not a retry into the same target
    params={
        "artifact_uri": Param(
            "",
            type="string",
            minLength=1,
            title="Backup",
            description="gs://, s3://, az:// or a local path of the artifact (its manifest beside it)",
        ),
        "target_conn_id": Param(
            "postgres_default",
            type="string",
            minLength=1,
            title="Target connection",
            description="Airflow postgres connection of the server to restore into",
        ),
        "target_database": Param(
            "",
            type="string",
            minLength=1,
            maxLength=63,
            title="New database",
            description="Created for the restore; it must not exist yet",
        ),
        "tables": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Tables",
            description="Only these tables (exact names; archive formats). Empty: everything",
        ),
        "schemas": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Schemas",
            description="Only the objects of these schemas (with Tables: only those tables in them)",
        ),
        "existing_database": Param(
            False,
            type="boolean",
            title="Existing database",
            description="Restore into a database that exists already instead of creating it",
        ),
        "allow_non_empty_database": Param(
            False,
            type="boolean",
            title="Allow a non-empty database",
            description="With Existing database: restore even into one that holds tables",
        ),
        "allow_source_database": Param(
            False,
            type="boolean",
            title="Allow the source database",
            description="Restore even into the database the backup was taken from",
        ),
        "gcp_conn_id": Param("google_cloud_default", type="string", title="GCP connection"),
        "decryption_conn_id": Param(
            None,
            type=["null", "string"],
            title="Decryption connection",
            description="For an age-encrypted backup: the connection whose password holds the identity",
        ),
    },
) as dag:
    PgRestoreOperator(
        task_id="restore",
        artifact_path="{{ params.artifact_uri }}",
        postgres_conn_id="{{ params.target_conn_id }}",
        database="{{ params.target_database }}",
        tables="{{ params.tables | join(',') }}",
        schemas="{{ params.schemas | join(',') }}",
        create_database="{{ not params.existing_database }}",
        drop_after=False,  # a kept database: never dropped, also when a step fails
        allow_non_empty_database="{{ params.allow_non_empty_database }}",
        allow_source_database="{{ params.allow_source_database }}",
        gcp_conn_id="{{ params.gcp_conn_id }}",
        decryption_conn_id="{{ params.decryption_conn_id or '' }}",
        outlets=[RESTORES],
        execution_timeout=datetime.timedelta(hours=6),
    )
