"""PgDumpAllOperator: pg_dumpall (the whole cluster, or its globals or roles) into one plain SQL backup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_pgbackup.manifest import Manifest
from airflow_provider_pgbackup.operators.backup_base import BackupOperator, TimeoutValue, storage_settings
from airflow_provider_pgbackup.options import (
    PgDumpAllOptions,
    PgDumpOptions,
    is_templated,
)
from airflow_provider_pgbackup.storage import (
    Location,
    check_output_path,
)


class PgDumpAllOperator(BackupOperator):
    """Dump a whole server (or only its roles and tablespaces) with ``pg_dumpall`` into a plain SQL artifact.

    As with :class:`PgDumpOperator`, a ``gs://bucket/name`` output_path streams the (optionally
    gzipped) SQL straight into a resumable Google Cloud Storage upload, with the manifest object
    written after it; nothing is stored locally.

    :param postgres_conn_id: Airflow ``postgres`` connection (a superuser, or a role that may read
        what the chosen mode needs). Templated.
    :param output_path: absolute path of the SQL artifact, or ``gs://bucket/path/name``. Templated.
    :param mode: ``full`` (every database), ``globals`` (roles and tablespaces, ``--globals-only``) or
        ``roles`` (``--roles-only``). Templated.
    :param no_role_passwords: leave role passwords out (``--no-role-passwords``); managed services such
        as Cloud SQL, RDS and Azure forbid reading ``pg_authid`` and need this. Templated (a rendered
        ``"True"``/``"False"`` is accepted).
    :param compression: ``none`` or ``gzip[:1-9]``; the provider gzips pg_dumpall's output stream.
    :param lock_wait_timeout: as for :class:`PgDumpOperator` (``full`` mode only).
    :param extra_args: additional pg_dumpall flags from a documented allow-list (see README).
    :param pg_bin_dir: folder searched first for ``pg_dumpall``.
    :param overwrite: replace a finished backup already at ``output_path`` (default: fail).
    :param gcp_conn_id: Airflow ``google_cloud_platform`` connection for a ``gs://`` output_path, as
        for :class:`PgDumpOperator`. Unused for a local path. Templated.
    :param gcs_chunk_size: bytes per upload request for an object-store output_path, as for
        :class:`PgDumpOperator`. Unused for a local path.
    :param file_mode: as for :class:`PgDumpOperator` (default ``0o600``: a pg_dumpall holds role
        password hashes).
    :param aws_conn_id: Airflow ``aws`` connection for an ``s3://`` output_path, resolved by the Amazon
        provider's ``S3Hook`` (boto3's default credential chain when the default connection does not
        exist). Templated.
    :param wasb_conn_id: Airflow ``wasb`` connection for an ``az://`` output_path, resolved by the Microsoft
        Azure provider's ``WasbHook`` (``AZURE_STORAGE_CONNECTION_STRING`` or ``AZURE_STORAGE_ACCOUNT_URL``
        when the default connection does not exist). Templated.
    :param impersonation_chain: service account(s) to impersonate for ``gs://`` (one e-mail, or a chain
        whose last account is impersonated; needs the ``google`` extra). Templated.
    :param encryption_recipients: age public keys (``age1...``, ``ssh-ed25519 ...``, ``ssh-rsa ...``),
        one string or a list: the artifact is encrypted to every one of them before it leaves the
        worker (any one of their identities decrypts it; keep an offline break-glass key beside the
        daily one). ``output_path`` must then end with ``.age`` (and must not without them). A malformed
        key fails at parse time, named. Needs the ``[age]`` extra. Templated (e.g. from a Variable).
    :param lock_for: publish the backup locked until its finish time plus this duration; with
        ``lock_mode`` and ``lock_legal_hold``, as :class:`PgDumpOperator` takes them. Templated.
    """

    template_fields: Sequence[str] = (
        "postgres_conn_id",
        "output_path",
        "mode",
        "no_role_passwords",
        "compression",
        "gcp_conn_id",
        "aws_conn_id",
        "wasb_conn_id",
        "impersonation_chain",
        "encryption_recipients",
        "lock_for",
    )
    ui_color = "#b0d4f1"

    def __init__(
        self,
        *,
        mode: str = "full",
        no_role_passwords: bool | str = False,
        compression: str | None = None,
        lock_wait_timeout: TimeoutValue = "5min",
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        # output_path, postgres_conn_id, pg_bin_dir, overwrite, the storage and encryption arguments:
        # BackupOperator's (documented above).
        super().__init__(**kwargs)
        self.mode = mode
        self.no_role_passwords = no_role_passwords
        self.compression = compression
        self.lock_wait_timeout = lock_wait_timeout
        self.extra_args = extra_args
        storage_settings(self)  # gcs_chunk_size and file_mode are not templated
        self._check_connection_arguments()
        if not is_templated(mode, compression, no_role_passwords):
            self._options()
        if not is_templated(self.output_path):
            check_output_path(self.output_path)
        self._check_encryption_literal()

    def _options(self) -> PgDumpAllOptions:
        return PgDumpAllOptions.build(
            mode=self.mode,
            no_role_passwords=self.no_role_passwords,
            compression=self.compression,
            lock_wait_timeout=self.lock_wait_timeout,
            extra_args=self.extra_args,
        )

    def _dump(self, options: PgDumpOptions | PgDumpAllOptions, where: Location, **common: Any) -> Manifest:
        assert isinstance(options, PgDumpAllOptions)
        return self.hook.dumpall(options, where, **common)
