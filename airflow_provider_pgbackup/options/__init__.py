"""Validated dump options: every user-supplied value is checked here, before any subprocess starts.

Nothing in this module touches the network, the disk or a subprocess, so operators can call it in
``__init__`` (for literal arguments) and again at the start of ``execute`` (for templated ones).

``arguments.py``: checks of any argument (names, connection ids, flags, numbers, templates);
``pg_values.py``: the PostgreSQL tools' values (format, :class:`Compression`, record, lock wait);
``pg_dump.py``: :class:`PgDumpOptions`, :class:`PgDumpAllOptions` and the allowed ``extra_args``.
Import them from here.
"""

from __future__ import annotations

from airflow_provider_pgbackup.options.arguments import (
    InvalidOptionError,
    check_bin_dir,
    check_conn_id,
    check_name,
    check_names,
    check_optional_name,
    check_positive_number,
    is_templated,
    parse_flag,
)
from airflow_provider_pgbackup.options.pg_dump import (
    PG_DUMP_SWITCHES,
    PG_DUMP_VALUED,
    PG_DUMPALL_SWITCHES,
    PG_DUMPALL_VALUED,
    PgDumpAllOptions,
    PgDumpOptions,
    check_extra_args,
)
from airflow_provider_pgbackup.options.pg_values import (
    COMPRESSION_LEVELS,
    DUMP_FORMATS,
    DUMPALL_MODES,
    FORMAT_FLAGS,
    RECORD_MODES,
    Compression,
    CompressionMethod,
    DumpAllMode,
    DumpFormat,
    RecordMode,
    default_compression,
    parse_dumpall_mode,
    parse_format,
    parse_lock_wait_timeout,
    parse_record,
)

__all__ = [
    "COMPRESSION_LEVELS",
    "DUMPALL_MODES",
    "DUMP_FORMATS",
    "FORMAT_FLAGS",
    "PG_DUMPALL_SWITCHES",
    "PG_DUMPALL_VALUED",
    "PG_DUMP_SWITCHES",
    "PG_DUMP_VALUED",
    "RECORD_MODES",
    "Compression",
    "CompressionMethod",
    "DumpAllMode",
    "DumpFormat",
    "InvalidOptionError",
    "PgDumpAllOptions",
    "PgDumpOptions",
    "RecordMode",
    "check_bin_dir",
    "check_conn_id",
    "check_extra_args",
    "check_name",
    "check_names",
    "check_optional_name",
    "check_positive_number",
    "default_compression",
    "is_templated",
    "parse_dumpall_mode",
    "parse_flag",
    "parse_format",
    "parse_lock_wait_timeout",
    "parse_record",
]
