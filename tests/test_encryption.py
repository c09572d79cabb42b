"""age encryption (issue 15): encrypted dumps in every format, local and gs://, verified with and without a
key, restored by the drill; tampering, wrong keys, malformed recipients; interop with the Debian ``age``
CLI; the identity reaches no argv, environment, log, XCom or exception text.

The server version does not matter to encryption: everything runs on PostgreSQL 18 only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyrage
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_pgbackup.binaries import choose_binary
from airflow_provider_pgbackup.encryption import AGE_MAGIC, parse_recipients
from airflow_provider_pgbackup.manifest import manifest_path_for, read_manifest
from airflow_provider_pgbackup.operators.pg_dump import PgDumpAllOperator, PgDumpOperator
from airflow_provider_pgbackup.operators.pg_restore import PgRestoreOperator
from airflow_provider_pgbackup.options import InvalidOptionError
from airflow_provider_pgbackup.sensors.backup_artifact import PgBackupArtifactSensor
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD, log_text, row_counts
from tests.gcs_emulator import GCSEmulator, upload_local_backup
from tests.helpers import watch_children

pytestmark = pytest.mark.parametrize("pg", ["pg18"], indirect=True)

KEY = pyrage.x25519.Identity.generate()
SECRET = str(KEY)
RECIPIENT = str(KEY.to_public())
OTHER = pyrage.x25519.Identity.generate()
SSH_RECIPIENT = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB/VRh0MaYxp break-glass"
SUFFIX = {"custom": ".dump.age", "tar": ".tar.age", "plain": ".sql.age", "directory": ".dir.age"}
AGE_CLI = shutil.which("age")
needs_age_cli = pytest.mark.skipif(
    AGE_CLI is None and not os.environ.get("CI"), reason="the age CLI is not installed (make test-tools)"
)


@pytest.fixture
def age_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow connection ``age_key`` whose password is an age-keygen style key file."""
    key_file = f"# created: today\n# public key: {RECIPIENT}\n{SECRET}\n"
    monkeypatch.setenv("AIRFLOW_CONN_AGE_KEY", json.dumps({"conn_type": "generic", "password": key_file}))
    monkeypatch.setenv("AIRFLOW_CONN_WRONG_KEY", json.dumps({"conn_type": "generic", "password": str(OTHER)}))
    return "age_key"


def dump(conn_id: str, output: str, dump_format: str = "custom", **kwargs: Any) -> dict[str, Any]:
    operator = PgDumpOperator(
        task_id="dump",
        postgres_conn_id=conn_id,
        output_path=output,
        format=dump_format,
        encryption_recipients=kwargs.pop("recipients", [RECIPIENT, SSH_RECIPIENT]),
        **kwargs,
    )
    return operator.execute(context={})


def verify(path: str, **kwargs: Any) -> dict[str, Any]:
    sensor = PgBackupArtifactSensor(task_id="verify", path=path, **kwargs)
    result = sensor.poke(context={})
    assert result, result
    return result.xcom_value  # type: ignore[union-attr]


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def drill(conn_id: str, path: str, **kwargs: Any) -> dict[str, Any]:
    operator = PgRestoreOperator(task_id="drill", postgres_conn_id=conn_id, artifact_path=path, **kwargs)
    return operator.execute(context={})


@pytest.mark.parametrize("dump_format", ["custom", "tar", "plain", "directory"])
def test_encrypted_dump_verifies_without_and_with_a_key_and_the_drill_restores_it(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, tmp_path: Path, dump_format: str
) -> None:
    conn_id = airflow_conn(pg, sample)
    artifact = tmp_path / f"db{SUFFIX[dump_format]}"
    jobs = 2 if dump_format == "directory" else None
    xcom = dump(conn_id, str(artifact), dump_format, jobs=jobs)

    assert xcom["artifact"] == artifact.name
    assert xcom["artifact_path"] == str(artifact)
    assert xcom["schema_version"] == 3
    encryption = xcom["encryption"]
    assert encryption["format"] == "age-v1"
    assert encryption["recipients"] == [RECIPIENT, SSH_RECIPIENT]
    assert encryption["plaintext_size_bytes"] > 0
    assert encryption["plaintext_sha256"] != xcom["sha256"]
    if dump_format == "directory":
        names = sorted(p.name for p in artifact.iterdir())
        assert names
        assert all(n.endswith(".age") for n in names), names
        assert "toc.dat.age" in names
        assert all(p.read_bytes().startswith(AGE_MAGIC) for p in artifact.iterdir())
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging, no plaintext
    else:
        assert artifact.read_bytes().startswith(AGE_MAGIC)
        assert xcom["size_bytes"] == artifact.stat().st_size
        assert xcom["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()

    blind = verify(str(artifact))
    assert statuses(blind)["encryption"] == "ok"
    assert statuses(blind)["decryption"] == "skipped"
    assert statuses(blind)["contents"] == "skipped"
    assert statuses(blind)["checksum"] == "ok"

    keyed = verify(str(artifact), decryption_conn_id=age_key)
    assert {k: v for k, v in statuses(keyed).items() if k != "age"} == {
        "exists": "ok",
        "manifest": "ok",
        "size": "ok",
        "checksum": "ok",
        "encryption": "ok",
        "decryption": "ok",
        "contents": "ok",
        "tables": "skipped" if dump_format == "plain" else "ok",
    }

    result = drill(airflow_conn(pg, "postgres"), str(artifact), decryption_conn_id=age_key, jobs=jobs)
    assert result["dropped_database"] is True
    assert {(t["schema"], t["table"]): t["restored"] for t in result["tables"]} == row_counts(pg, sample)
    assert result["content"]["verdict"] == "IDENTICAL"


def test_encrypted_custom_dump_streams_to_gs_and_the_drill_restores_it_from_there(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    uri = f"gs://{gcs_bucket}/db/nightly.dump.age"
    xcom = dump(airflow_conn(pg, sample), uri, recipients=RECIPIENT)
    assert xcom["artifact_path"] == uri
    blob = gcs.client().bucket(gcs_bucket).blob("db/nightly.dump.age").download_as_bytes()
    assert blob.startswith(AGE_MAGIC)
    assert statuses(verify(uri))["encryption"] == "ok"
    result = drill(airflow_conn(pg, "postgres"), uri, decryption_conn_id=age_key)
    assert result["content"]["verdict"] == "IDENTICAL"


def test_encrypted_pg_dumpall_is_gzipped_then_encrypted_into_gs_and_verifies_with_the_key(
    pg: PgCluster, airflow_conn, age_key: str, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    uri = f"gs://{gcs_bucket}/cluster/globals.sql.gz.age"
    PgDumpAllOperator(
        task_id="dumpall",
        postgres_conn_id=airflow_conn(pg, "postgres"),
        output_path=uri,
        mode="globals",
        no_role_passwords=True,
        compression="gzip:6",
        encryption_recipients=[RECIPIENT],
    ).execute(context={})
    keyed = verify(uri, decryption_conn_id=age_key)
    assert statuses(keyed)["decryption"] == "ok"
    assert statuses(keyed)["contents"] == "ok"  # decrypted, gunzipped, ends with pg_dumpall's trailer


def test_an_uploaded_encrypted_backup_verifies_in_gs(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, tmp_path: Path, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    artifact = tmp_path / "db.tar.age"
    dump(airflow_conn(pg, sample), str(artifact), "tar", recipients=RECIPIENT)
    uri = upload_local_backup(gcs, gcs_bucket, artifact)
    assert statuses(verify(uri, decryption_conn_id=age_key))["tables"] == "ok"


def _rewrite_manifest(artifact: Path) -> None:
    """Make the manifest's ciphertext digest match the (tampered) bytes: only age's own authentication
    can then tell."""
    path = manifest_path_for(artifact)
    data = json.loads(path.read_text())
    body = artifact.read_bytes()
    data["sha256"], data["size_bytes"] = hashlib.sha256(body).hexdigest(), len(body)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_tampered_ciphertext_is_corrupt_naming_the_check(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, tmp_path: Path, damage: str
) -> None:
    artifact = tmp_path / "db.dump.age"
    dump(airflow_conn(pg, sample), str(artifact), recipients=RECIPIENT)
    body = bytearray(artifact.read_bytes())
    if damage == "flip":
        body[len(body) // 2] ^= 0x01
    else:
        del body[-100:]
    artifact.write_bytes(bytes(body))

    with pytest.raises(AirflowFailException, match=r"check '(size|checksum)' failed"):
        verify(str(artifact))  # the recorded ciphertext size / sha256 catch it without a key
    _rewrite_manifest(artifact)
    assert statuses(verify(str(artifact)))["encryption"] == "ok"  # the header alone looks fine
    with pytest.raises(AirflowFailException, match=r"corrupt: check 'decryption' failed: .*authentication"):
        verify(str(artifact), decryption_conn_id=age_key)
    with pytest.raises(AirflowFailException, match=r"refusing to restore .*check 'decryption' failed"):
        drill(airflow_conn(pg, "postgres"), str(artifact), decryption_conn_id=age_key)


def test_a_header_that_does_not_match_the_recorded_recipients_is_corrupt_without_a_key(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path
) -> None:
    artifact = tmp_path / "db.dump.age"
    dump(airflow_conn(pg, sample), str(artifact), recipients=[RECIPIENT, SSH_RECIPIENT])
    path = manifest_path_for(artifact)
    data = json.loads(path.read_text())
    data["encryption"]["recipients"] = [RECIPIENT, str(OTHER.to_public())]
    path.write_text(json.dumps(data))
    with pytest.raises(AirflowFailException, match=r"check 'encryption' failed: .*stanzas"):
        verify(str(artifact))


def test_a_wrong_key_fails_as_a_key_problem_never_as_corrupt(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, tmp_path: Path
) -> None:
    artifact = tmp_path / "db.dump.age"
    dump(airflow_conn(pg, sample), str(artifact), recipients=RECIPIENT)
    for run in (
        lambda: verify(str(artifact), decryption_conn_id="wrong_key"),
        lambda: drill(airflow_conn(pg, "postgres"), str(artifact), decryption_conn_id="wrong_key"),
    ):
        with pytest.raises(AirflowFailException) as err:
            run()
        assert "no identity matches the recipients recorded in the manifest" in str(err.value)
        assert "corrupt" not in str(err.value)
        assert str(OTHER) not in str(err.value)
    with pytest.raises(AirflowFailException, match=r"is encrypted .*decryption_conn_id"):
        drill(airflow_conn(pg, "postgres"), str(artifact))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encryption_recipients": "age1notakey"}, "'age1notakey' is malformed"),
        (
            {"encryption_recipients": [RECIPIENT, "ssh-ed25519 AAAAbroken"]},
            "'ssh-ed25519 AAAAbroken' is malformed",
        ),
        ({"encryption_recipients": ["gpg:ABCDEF"]}, "'gpg:ABCDEF' is not an age recipient"),
        ({"encryption_recipients": RECIPIENT, "output_path": "/b/db.dump"}, "must end with '.age'"),
        ({"output_path": "/b/db.dump.age"}, "no encryption_recipients"),
    ],
)
def test_bad_encryption_arguments_fail_at_parse_time_naming_the_value(
    pg: PgCluster, kwargs: dict[str, Any], message: str
) -> None:
    args: dict[str, Any] = {"task_id": "dump", "output_path": "/b/db.dump.age", **kwargs}
    for operator in (PgDumpOperator, PgDumpAllOperator):
        with pytest.raises(InvalidOptionError, match=message):
            operator(**args)
    # templated recipients are checked once rendered
    PgDumpOperator(task_id="t", output_path="/b/db.dump.age", encryption_recipients="{{ var.value.keys }}")
    assert parse_recipients(f"  {RECIPIENT}  ") == (RECIPIENT,)


@needs_age_cli
def test_the_age_cli_decrypts_a_provider_backup_into_pg_restore(
    pg: PgCluster, sample: str, airflow_conn, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(key_file)], check=True, capture_output=True, text=True
    ).stdout.strip()
    artifact = tmp_path / "backup.dump.age"
    dump(airflow_conn(pg, sample), str(artifact), recipients=[public])
    pg_restore = choose_binary("pg_restore", pg.major, str(pg.major), None).path
    # No pipefail: pg_restore --list stops reading a custom archive after its TOC, so age may get SIGPIPE.
    listing = subprocess.run(
        f"age -d -i {key_file} {artifact} | {pg_restore} --list",
        shell=True,
        executable="/bin/bash",
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "TABLE DATA shop customers" in listing
    plain = subprocess.run(["age", "-d", "-i", str(key_file), str(artifact)], check=True, capture_output=True)
    recorded = json.loads(manifest_path_for(artifact).read_text())["encryption"]
    assert hashlib.sha256(plain.stdout).hexdigest() == recorded["plaintext_sha256"]


@needs_age_cli
def test_the_provider_verifies_and_drills_a_backup_encrypted_by_the_age_cli(
    pg: PgCluster, sample: str, pg_backup, airflow_conn, age_key: str, tmp_path: Path
) -> None:
    plain = pg_backup("custom")
    manifest = read_manifest(manifest_path_for(plain))
    artifact = tmp_path / "cli.dump.age"
    subprocess.run(["age", "-r", RECIPIENT, "-o", str(artifact), str(plain)], check=True)
    body = artifact.read_bytes()
    data = manifest.to_dict()
    data.update(
        artifact=artifact.name,
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        schema_version=3,
        encryption={
            "format": "age-v1",
            "recipients": [RECIPIENT],
            "plaintext_size_bytes": manifest.size_bytes,
            "plaintext_sha256": manifest.sha256,
        },
    )
    manifest_path_for(artifact).write_text(json.dumps(data))
    assert statuses(verify(str(artifact)))["encryption"] == "ok"
    assert statuses(verify(str(artifact), decryption_conn_id=age_key))["decryption"] == "ok"
    result = drill(airflow_conn(pg, "postgres"), str(artifact), decryption_conn_id=age_key)
    assert result["content"]["verdict"] == "IDENTICAL"


def test_the_identity_reaches_no_argv_environment_log_xcom_or_rendered_field(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, tmp_path: Path, task_log: list
) -> None:
    artifact = tmp_path / "db.dump.age"
    dump_xcom = dump(airflow_conn(pg, sample), str(artifact), recipients=RECIPIENT)
    with watch_children(("pg_restore", "psql")) as children:
        verified = verify(str(artifact), decryption_conn_id=age_key)
        operator = PgRestoreOperator(
            task_id="drill",
            postgres_conn_id=airflow_conn(pg, "postgres"),
            artifact_path=str(artifact),
            decryption_conn_id=age_key,
        )
        restored = operator.execute(context={})
    assert children, "pg_restore was never sampled"
    secret = SECRET.encode()
    for cmdline, environ in children.values():
        assert secret not in cmdline
        assert secret not in environ
        assert b"AGE-SECRET-KEY" not in environ
    for name in operator.template_fields:
        assert SECRET not in str(getattr(operator, name))
    texts = [log_text(task_log), json.dumps(dump_xcom), json.dumps(verified), json.dumps(restored)]
    texts.append(manifest_path_for(artifact).read_text())
    for text in texts:
        assert SECRET not in text
        assert PASSWORD not in text
    assert "AGE-SECRET-KEY-1" not in "".join(texts)


# ------------------------------------------------------------------- a secret where a recipient belongs
SSH_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU-distinctive-ssh-key\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRET_AS_RECIPIENT = {
    "identity": SECRET,
    "identity_in_a_list": [RECIPIENT, f"  {SECRET}  "],
    "age_keygen_key_file": f"# created: today\n# public key: {RECIPIENT}\n{SECRET}\n",
    "lowercase_identity": SECRET.lower(),
    "ssh_private_key": [SSH_PRIVATE_KEY],
}


@pytest.mark.parametrize("case", sorted(SECRET_AS_RECIPIENT))
def test_a_secret_key_given_as_a_recipient_is_refused_unquoted_and_masked_also_as_a_dag_import_error(
    pg: PgCluster, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    value = SECRET_AS_RECIPIENT[case]
    secrets = [SECRET, SECRET.lower(), "distinctive-ssh-key"]
    for operator in (PgDumpOperator, PgDumpAllOperator):
        with pytest.raises(InvalidOptionError) as err:
            operator(task_id="dump", output_path="/b/db.dump.age", encryption_recipients=value)
        message = str(err.value)
        assert not any(secret in message for secret in secrets), message
        assert "where a public recipient (age1..., ssh-ed25519 ... or ssh-rsa ...) belongs" in message
        if case == "ssh_private_key":
            assert "is a private key" in message
        else:
            assert "is an age identity (a secret key)" in message
            assert f"its public key, the recipient to give instead, is {RECIPIENT}" in message
            assert redact(f"key {SECRET} here") == "key *** here"
    # At parse time the error becomes the DAG's import error, shown in the UI to anyone who can see DAGs.
    monkeypatch.setenv("PGBACKUP_TEST_RECIPIENTS", json.dumps(value))
    (tmp_path / "secret_recipient.py").write_text(
        "import json, os\n"
        "import pendulum\n"
        "from airflow.sdk import DAG\n"
        "from airflow_provider_pgbackup.operators.pg_dump import PgDumpOperator\n"
        "with DAG('secret_recipient', schedule=None, start_date=pendulum.datetime(2026, 1, 1)):\n"
        "    PgDumpOperator(task_id='dump', output_path='/b/db.dump.age',\n"
        "                   encryption_recipients=json.loads(os.environ['PGBACKUP_TEST_RECIPIENTS']))\n"
    )
    from airflow.dag_processing.dagbag import DagBag

    errors = DagBag(dag_folder=str(tmp_path), safe_mode=False).import_errors
    assert len(errors) == 1
    text = next(iter(errors.values()))
    assert "where a public recipient" in text
    assert not any(secret in text for secret in secrets), text


# ------------------------------------------------------------------------------ a tampered age header
def _tamper_first_stanza(artifact: Path) -> None:
    """Change one character of the first recipient stanza's body: the header stays well-formed age (the
    same stanzas, base64 of the right length), but its file key no longer unwraps."""
    body = bytearray(artifact.read_bytes())
    stanza = body.index(b"\n-> X25519 ")
    at = body.index(b"\n", stanza + 1) + 1  # the first character of the stanza's body line
    body[at] = ord("A") if body[at] != ord("A") else ord("B")
    artifact.write_bytes(bytes(body))


@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_a_tampered_age_header_is_corrupt_when_the_key_is_a_recorded_recipient_and_a_key_problem_when_not(
    pg: PgCluster, sample: str, airflow_conn, age_key: str, tmp_path: Path, dump_format: str
) -> None:
    artifact = tmp_path / f"db{SUFFIX[dump_format]}"
    dump(airflow_conn(pg, sample), str(artifact), dump_format, recipients=RECIPIENT)
    if dump_format == "directory":
        _tamper_first_stanza(artifact / "toc.dat.age")
        path = manifest_path_for(artifact)
        data = json.loads(path.read_text())
        for entry in data["files"]:  # only age itself can tell: the recorded digests are made to match
            body = (artifact / entry["path"]).read_bytes()
            entry["sha256"], entry["size_bytes"] = hashlib.sha256(body).hexdigest(), len(body)
        from airflow_provider_pgbackup.storage.files import digest_directory

        digest = digest_directory(artifact)
        data["sha256"], data["size_bytes"] = digest.sha256, digest.size_bytes
        path.write_text(json.dumps(data))
    else:
        _tamper_first_stanza(artifact)
        _rewrite_manifest(artifact)
    assert statuses(verify(str(artifact)))["encryption"] == "ok"  # well-formed: no key can say more

    with pytest.raises(AirflowFailException) as err:
        verify(str(artifact), decryption_conn_id=age_key)
    assert "is corrupt: check 'decryption' failed" in str(err.value)
    assert "age header is damaged" in str(err.value)
    assert f"the manifest records {RECIPIENT} as a recipient" in str(err.value)
    assert "no identity matches" not in str(err.value)
    if dump_format == "directory":  # the decrypted copy pg_restore --list reads: the same verdict
        with pytest.raises(
            AirflowFailException, match=r"corrupt: check 'contents' failed: .*header is damaged"
        ):
            verify(str(artifact), decryption_conn_id=age_key, verify_checksum=False)
    with pytest.raises(AirflowFailException, match=r"refusing to restore .*'decryption' failed: .*damaged"):
        drill(airflow_conn(pg, "postgres"), str(artifact), decryption_conn_id=age_key)
    # A key of none of the recorded recipients learns nothing about the bytes: a key problem still.
    with pytest.raises(AirflowFailException) as err:
        verify(str(artifact), decryption_conn_id="wrong_key")
    assert "no identity matches the recipients recorded in the manifest" in str(err.value)
    assert "corrupt" not in str(err.value)


# ------------------------------------------------------------------------------------------ downgrades
def _plaintext_backup_named(plain: Path, artifact: Path, encryption: dict[str, Any] | None = None) -> Path:
    """``plain`` (a real plaintext backup) copied to ``artifact`` with a consistent manifest, recording
    ``encryption`` (None: none, as a plaintext dump's manifest does)."""
    shutil.copyfile(plain, artifact)
    data = read_manifest(manifest_path_for(plain)).to_dict()
    data["artifact"] = artifact.name
    if encryption is not None:
        data.update(schema_version=3, encryption=encryption)
    manifest_path_for(artifact).write_text(json.dumps(data))
    return artifact


def test_a_plaintext_backup_where_an_encrypted_one_belongs_is_refused_by_the_sensor_and_the_drill(
    pg: PgCluster, pg_backup, airflow_conn, age_key: str, tmp_path: Path
) -> None:
    plain = pg_backup("custom")
    renamed = _plaintext_backup_named(plain, tmp_path / "db.dump.age")  # a .age name, no encryption
    drill_conn = airflow_conn(pg, "postgres")
    for key in (None, age_key):
        with pytest.raises(AirflowFailException) as err:
            verify(str(renamed), **({"decryption_conn_id": key} if key else {}))
        assert "refused at check 'encryption'" in str(err.value)
        assert "named as an encrypted backup" in str(err.value)
        assert "records no encryption" in str(err.value)
        assert "corrupt" not in str(err.value)  # nothing is wrong with the bytes themselves
        with pytest.raises(AirflowFailException, match=r"refused at check 'encryption'"):
            drill(drill_conn, str(renamed), **({"decryption_conn_id": key} if key else {}))
    # A plain name, but the caller expects encryption (gave a key): refused the same way.
    with pytest.raises(
        AirflowFailException, match=r"refused at check 'encryption': a decryption key was given"
    ):
        verify(str(plain), decryption_conn_id=age_key)
    with pytest.raises(
        AirflowFailException, match=r"refused at check 'encryption': a decryption key was given"
    ):
        drill(drill_conn, str(plain), decryption_conn_id=age_key)
    # A manifest recording encryption over bytes that are not age: evidence about the bytes, corrupt.
    record = {
        "format": "age-v1",
        "recipients": [RECIPIENT],
        "plaintext_size_bytes": 1,
        "plaintext_sha256": "0" * 64,
    }
    claimed = _plaintext_backup_named(plain, tmp_path / "claimed.dump.age", encryption=record)
    for key in (None, age_key):
        with pytest.raises(
            AirflowFailException, match=r"is corrupt: check 'encryption' failed: .*age v1 header"
        ):
            verify(str(claimed), **({"decryption_conn_id": key} if key else {}))
    # Without a .age name and without a key a plaintext backup is what it says: it still passes.
    assert statuses(verify(str(plain)))["contents"] == "ok"
    assert "encryption" not in statuses(verify(str(plain)))
