"""Apache Airflow provider for verifiable PostgreSQL backups."""

from __future__ import annotations

__version__ = "0.2.0"
