"""The Backups page's endpoints on the real api-server, called directly (cheaper than a browser).

A backup of a database is made first by ``pg_backup_to_gcs`` through the REST API (the call the UI's
trigger button makes); then every route is called anonymously, as a user allowed nothing, as a viewer
and as an admin. The auth manager is the stack's real SimpleAuthManager.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.ui.conftest import UiStack

DATABASE = "api shop ü"
CONN_ID = "pg_api"
ROUTES = [
    ("GET", "/pgbackup/", None),
    ("GET", "/pgbackup/static/backups.js", None),
    ("GET", "/pgbackup/api/backups", None),
    ("POST", "/pgbackup/api/restore", {"artifact_uri": "x", "target_conn_id": "x", "target_database": "x"}),
    ("POST", "/pgbackup/api/backup", {"connection": CONN_ID, "database": DATABASE}),
]


def call(
    stack: UiStack,
    method: str,
    path: str,
    body: Any = None,
    *,
    user: str | None = "admin",
    headers: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, str]]:
    """(status, body text, headers) of one request as ``user`` (None: anonymous)."""
    request = urllib.request.Request(
        f"{stack.airflow.url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if user is not None:
        request.add_header("Authorization", f"Bearer {stack.airflow.token(user)}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def catalogue(stack: UiStack, user: str = "admin") -> dict[str, Any]:
    status, text, _ = call(stack, "GET", "/pgbackup/api/backups", user=user)
    assert status == 200, text
    result: dict[str, Any] = json.loads(text)
    return result


def our_group(data: dict[str, Any]) -> dict[str, Any]:
    [group] = [g for g in data["databases"] if g["database"] == DATABASE]
    return group


@pytest.fixture(scope="module")
def backed_up(ui_stack: UiStack, pg18: PgCluster) -> Iterator[dict[str, Any]]:
    """One verified backup of DATABASE in the stack's bucket, made with the Database field left empty."""
    pg18.drop_database(DATABASE)
    pg18.create_database(DATABASE)
    pg18.execute(
        "CREATE SCHEMA sales; CREATE TABLE sales.orders AS SELECT g AS id FROM generate_series(1, 200) g;"
        "CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 30) g",
        dbname=DATABASE,
    )
    ui_stack.airflow.create_connection(CONN_ID, json.loads(pg18.airflow_conn_json(DATABASE)))
    conf = {"postgres_conn_id": CONN_ID, "database": None, "bucket": ui_stack.bucket, "prefix": "api"}
    run_id = ui_stack.airflow.trigger("pg_backup_to_gcs", conf)
    ui_stack.wait_for_run("pg_backup_to_gcs", run_id)
    yield {"run_id": run_id}
    pg18.drop_database(DATABASE)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_an_anonymous_request_gets_401_and_no_backup(
    ui_stack: UiStack, backed_up: dict[str, Any], method: str, path: str, body: Any
) -> None:
    status, text, _ = call(ui_stack, method, path, body, user=None)
    assert status == 401
    assert DATABASE not in text
    assert ui_stack.bucket not in text
    assert "gs://" not in text


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_user_allowed_nothing_gets_403_and_no_backup(
    ui_stack: UiStack, backed_up: dict[str, Any], method: str, path: str, body: Any
) -> None:
    status, text, _ = call(ui_stack, method, path, body, user="nobody")
    assert status == 403
    assert DATABASE not in text
    assert ui_stack.bucket not in text
    assert "gs://" not in text


def test_the_page_lists_the_backup_as_the_tasks_reported_it(
    ui_stack: UiStack, backed_up: dict[str, Any]
) -> None:
    data = catalogue(ui_stack)
    group = our_group(data)
    assert group["connection"] == CONN_ID
    assert group["server"].startswith("127.0.0.1:")
    assert group["freshness"]["fresh"] is True
    assert group["freshness"]["target_seconds"] == 26 * 3600
    [backup] = group["backups"]
    # Database left empty: the folder is named after the database dumped, as the manifest says.
    assert backup["artifact_uri"].startswith(f"gs://{ui_stack.bucket}/api/{DATABASE}/")
    assert backup["verified"] is True
    assert {"size", "checksum", "contents", "tables"} <= set(backup["checks"])
    assert (backup["format"], backup["compression"], backup["encrypted"]) == ("custom", "gzip:6", False)
    assert backup["size_bytes"] > 0
    assert backup["duration_seconds"] > 0
    assert backup["size_drop"] is None
    assert backup["restore"] is None
    run = f"dags/pg_backup_to_gcs/runs/{backed_up['run_id']}"
    assert backup["links"] == {"run": run, "log": f"{run}/tasks/verify_uploaded"}
    # The object's page: the emulator the GCS connection names (read by the task, not the api-server).
    assert backup["object_url"].startswith("http://127.0.0.1:")
    assert "/storage/v1/b/" in backup["object_url"]
    assert group["can_back_up"] is True
    assert data["restore_dag"] == {"dag_id": "pg_restore_backup", "can_trigger": True}
    assert PASSWORD not in json.dumps(data)
    assert json.dumps(PASSWORD)[1:-1] not in json.dumps(data)
    # Unpausing the DAG to trigger it started no scheduled run on its defaults ahead of ours.
    runs = ui_stack.airflow.api("GET", "/api/v2/dags/pg_backup_to_gcs/dagRuns")["dag_runs"]
    assert {r["run_type"] for r in runs} == {"manual"}


def test_the_page_itself_is_served_framed_by_airflow_only(
    ui_stack: UiStack, backed_up: dict[str, Any]
) -> None:
    status, text, headers = call(ui_stack, "GET", "/pgbackup/")
    assert status == 200
    assert "<title>Backups</title>" in text
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    # Registered by the package's airflow.plugins entry point: Airflow lists the page in its UI.
    plugins = ui_stack.airflow.api("GET", "/api/v2/plugins")["plugins"]
    [plugin] = [p for p in plugins if p["name"] == "pgbackup"]
    assert plugin["external_views"][0]["name"] == "Backups"
    assert plugin["external_views"][0]["href"] == "/pgbackup/"


def test_a_viewer_sees_the_backups_but_may_neither_restore_nor_back_up(
    ui_stack: UiStack, backed_up: dict[str, Any]
) -> None:
    data = catalogue(ui_stack, user="viewer")
    group = our_group(data)
    assert group["backups"]
    assert group["can_back_up"] is False
    assert data["restore_dag"]["can_trigger"] is False
    backup = group["backups"][0]
    restore = {
        "artifact_uri": backup["artifact_uri"],
        "target_conn_id": CONN_ID,
        "target_database": "viewer_copy",
    }
    status, text, _ = call(ui_stack, "POST", "/pgbackup/api/restore", restore, user="viewer")
    assert (status, json.loads(text)["detail"]) == (
        403,
        "triggering pg_restore_backup is not allowed for this user",
    )
    status, _, _ = call(
        ui_stack, "POST", "/pgbackup/api/backup", {"connection": CONN_ID, "database": DATABASE}, user="viewer"
    )
    assert status == 403
    assert ui_stack.airflow.api("GET", "/api/v2/dags/pg_restore_backup/dagRuns")["total_entries"] == 0


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"artifact_uri": "gs://elsewhere/secret.dump"}, 404, "no such backup"),
        ({"target_database": "x" * 64}, 400, "at most 63 bytes"),
        ({"target_database": "two\nlines"}, 400, "no newline"),
        ({"target_database": DATABASE}, 400, "is the database this backup was taken from"),
        ({"tables": ["orders\n"]}, 400, "contains a newline"),
        ({"target_conn_id": " "}, 400, "must be the id of an Airflow connection"),
    ],
    ids=["unknown-backup", "long-name", "newline", "the-source", "bad-table", "blank-connection"],
)
def test_a_restore_request_is_checked_before_anything_is_triggered(
    ui_stack: UiStack, backed_up: dict[str, Any], change: dict[str, Any], status: int, message: str
) -> None:
    backup = our_group(catalogue(ui_stack))["backups"][0]
    body = {
        "artifact_uri": backup["artifact_uri"],
        "target_conn_id": CONN_ID,
        "target_database": "copy",
        **change,
    }
    got, text, _ = call(ui_stack, "POST", "/pgbackup/api/restore", body)
    assert got == status, text
    assert message in json.loads(text)["detail"]
    assert ui_stack.airflow.api("GET", "/api/v2/dags/pg_restore_backup/dagRuns")["total_entries"] == 0


def test_a_state_change_is_json_from_this_origin_only(ui_stack: UiStack, backed_up: dict[str, Any]) -> None:
    """A form another site posts (text/plain, or from another Origin) triggers nothing."""
    body = {"connection": CONN_ID, "database": DATABASE}
    request = urllib.request.Request(
        f"{ui_stack.airflow.url}/pgbackup/api/backup", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Content-Type", "text/plain")
    request.add_header("Authorization", f"Bearer {ui_stack.airflow.token()}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 415
    status, text, _ = call(
        ui_stack, "POST", "/pgbackup/api/backup", body, headers={"Origin": "https://elsewhere.example"}
    )
    assert (status, json.loads(text)["detail"]) == (403, "cross-origin requests are refused")
    runs = ui_stack.airflow.api("GET", "/api/v2/dags/pg_backup_to_gcs/dagRuns")["dag_runs"]
    assert [r["dag_run_id"] for r in runs] == [backed_up["run_id"]]


def test_back_up_now_runs_the_dag_again_and_the_page_lists_both_backups(
    ui_stack: UiStack, backed_up: dict[str, Any]
) -> None:
    status, text, _ = call(
        ui_stack, "POST", "/pgbackup/api/backup", {"connection": CONN_ID, "database": DATABASE}
    )
    assert status == 200, text
    started = json.loads(text)
    assert started["dag_id"] == "pg_backup_to_gcs"
    run = ui_stack.wait_for_run("pg_backup_to_gcs", started["run_id"])
    assert run["conf"]["postgres_conn_id"] == CONN_ID
    assert run["conf"]["database"] == DATABASE
    assert run["conf"]["prefix"] == "api"  # the rest of the conf is the previous run's
    backups = our_group(catalogue(ui_stack))["backups"]
    assert len(backups) == 2
    assert backups[0]["links"]["run"].endswith(started["run_id"])  # newest first
    assert backups[0]["finished_at"] > backups[1]["finished_at"]
