"""What ``airflow providers list`` shows for this package (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

from airflow_provider_pgbackup import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow's ProvidersManager reads."""
    return {
        "package-name": "airflow-provider-pgbackup",
        "name": "PostgreSQL backups (pg_dump, pg_dumpall, verification, GCS, S3, Azure)",
        "description": "Verifiable PostgreSQL backups as Airflow tasks: pg_dump / pg_dumpall "
        "artifacts written atomically with a JSON manifest.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "PostgreSQL backups",
                "external-doc-url": "https://www.postgresql.org/docs/current/app-pgdump.html",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "PostgreSQL backups",
                "python-modules": ["airflow_provider_pgbackup.hooks.pg_dump"],
            }
        ],
        "operators": [
            {
                "integration-name": "PostgreSQL backups",
                "python-modules": [
                    "airflow_provider_pgbackup.operators.pg_dump",
                    "airflow_provider_pgbackup.operators.pg_dumpall",
                    "airflow_provider_pgbackup.operators.pg_restore",
                    "airflow_provider_pgbackup.operators.retention",
                    "airflow_provider_pgbackup.operators.freshness",
                ],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "PostgreSQL backups",
                "target-integration-name": "Google Cloud Storage (GCS)",
                "python-module": "airflow_provider_pgbackup.transfers.backup_to_gcs",
            },
            {
                "source-integration-name": "PostgreSQL backups",
                "target-integration-name": "Object storage (GCS, Amazon S3, Azure Blob Storage)",
                "python-module": "airflow_provider_pgbackup.transfers.backup_upload",
            },
            {
                "source-integration-name": "Object storage (GCS, Amazon S3, Azure Blob Storage)",
                "target-integration-name": "Object storage (GCS, Amazon S3, Azure Blob Storage)",
                "python-module": "airflow_provider_pgbackup.transfers.backup_promote",
            },
        ],
        "extra-links": [
            "airflow_provider_pgbackup.links.BackupConsoleLink",
        ],
        "sensors": [
            {
                "integration-name": "PostgreSQL backups",
                "python-modules": ["airflow_provider_pgbackup.sensors.backup_artifact"],
            }
        ],
        "triggers": [
            {
                "integration-name": "PostgreSQL backups",
                "python-modules": ["airflow_provider_pgbackup.triggers.backup_artifact"],
            }
        ],
    }
