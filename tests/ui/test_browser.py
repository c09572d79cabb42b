"""A real browser against the stack `make ui` starts: what a new user does, click by click.

Playwright drives Debian's ``chromium`` (``make test`` installs it; browser downloads cannot work here):
sign in, create a Postgres connection through Admin -> Connections -> Add (the ``postgres`` type the
postgres provider registers), trigger ``pg_backup_to_gcs`` from its trigger form with that connection,
wait for a green run, and find the backup in the GCS emulator. Screenshots go to ``docs/browser/``
with ``PGBACKUP_SCREENSHOTS=docs`` (a temporary folder otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.airflow_stack import AirflowStack
from devtools.pgcluster import PgCluster
from tests.conftest import PASSWORD
from tests.gcs_emulator import GCSEmulator

REPO = Path(__file__).resolve().parents[2]
# The committed screenshots in docs/browser/ are refreshed only on request (PGBACKUP_SCREENSHOTS=docs),
# so a test run never leaves the checkout dirty; otherwise they go to a temporary folder.
SCREENSHOTS = (
    REPO / "docs" / "browser"
    if os.environ.get("PGBACKUP_SCREENSHOTS") == "docs"
    else Path(tempfile.gettempdir()) / "pgbackup-browser-screenshots"
)
CHROMIUM = "/usr/bin/chromium"
# What this sandbox needs: no GPU, no QUIC, nothing that phones home; a fresh profile per run.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DATABASE = "browser shop"
CONN_ID = "pg_browser"


@pytest.fixture
def stack(pg18: PgCluster, gcs: GCSEmulator, gcs_bucket: str, tmp_path: Path) -> Iterator[AirflowStack]:
    pg18.drop_database(DATABASE)
    pg18.create_database(DATABASE)
    pg18.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 321) g", dbname=DATABASE)
    stack = AirflowStack(
        home=Path(tempfile.mkdtemp(prefix="pgbackup-browser-home-")),
        dags_folder=REPO / "example_dags",
        extra_env={
            # The test creates its own connection in the UI. Unpausing the DAG also starts its latest
            # scheduled run (catchup=False still runs the last interval), ahead of the form's run
            # (max_active_runs=1): the deployment defaults below let that one finish green too.
            "AIRFLOW_CONN_POSTGRES_DEFAULT": pg18.airflow_conn_json(DATABASE),
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {"conn_type": "google_cloud_platform", "extra": {"emulator_host": gcs.endpoint}}
            ),
            "PGBACKUP_BACKUP_DIR": str(tmp_path / "scheduled"),
            "PGBACKUP_GCS_BUCKET": gcs_bucket,
        },
    )
    with stack:
        yield stack
    shutil.rmtree(stack.home, ignore_errors=True)
    pg18.drop_database(DATABASE)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 860},
        )
        context.set_default_timeout(30_000)
        page = context.new_page()
        try:
            yield page
        finally:
            page.screenshot(path=str(tmp_path / "last-screen.png"))  # what the browser showed last
            print(f"last screen: {tmp_path / 'last-screen.png'}")
            context.close()


def field(dialog: Any, label: str) -> Any:
    """The text box of the form group whose text starts with ``label`` (its label; a description follows)."""
    group = dialog.get_by_role("group").filter(has_text=re.compile(f"^{re.escape(label)}"))
    return group.get_by_role("textbox")


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_a_user_creates_a_postgres_connection_and_triggers_a_backup_in_the_browser(
    stack: AirflowStack, page: Any, pg18: PgCluster, gcs: GCSEmulator, gcs_bucket: str
) -> None:
    from playwright.sync_api import expect

    # Sign in.
    page.goto(f"{stack.url}/")
    page.get_by_label("Username").fill(stack.username)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags").first).to_be_visible()

    # Admin -> Connections -> Add: the postgres type is offered now.
    page.goto(f"{stack.url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Connection ID").fill(CONN_ID)
    dialog.get_by_role("combobox", name="Connection Type").fill("post")
    dialog.get_by_role("option", name="Postgres", exact=True).click()
    dialog.get_by_role("textbox", name="Host").fill(pg18.host)
    dialog.get_by_role("textbox", name="Login").fill(pg18.superuser)
    dialog.get_by_role("textbox", name="Password").fill(PASSWORD)
    dialog.get_by_role("spinbutton", name="Port").fill(str(pg18.port))
    dialog.get_by_role("textbox", name="Database").fill(DATABASE)
    shoot(page, "add-postgres-connection.png")  # the password field shows dots
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_text(CONN_ID, exact=True)).to_be_visible()
    stored = stack.api("GET", f"/api/v2/connections/{CONN_ID}")
    assert stored["conn_type"] == "postgres"
    assert stored["schema"] == DATABASE

    # Trigger pg_backup_to_gcs from its form with that connection, streamed straight into GCS.
    stack.wait_for_dag("pg_backup_to_gcs")
    page.goto(f"{stack.url}/dags/pg_backup_to_gcs")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    field(dialog, "PostgreSQL connection").fill(CONN_ID)
    field(dialog, "Database").fill(DATABASE)
    field(dialog, "Bucket").fill(gcs_bucket)
    field(dialog, "Prefix").fill("browser")
    stream = dialog.get_by_role("checkbox", name="Stream straight to GCS")
    if not stream.is_checked():
        stream.locator("xpath=..").click()  # the visible control, not the hidden input
    expect(stream).to_be_checked()
    shoot(page, "trigger-backup.png")
    dialog.get_by_role("button", name="Trigger").click()
    expect(page.get_by_text("Dag Run Triggered").first).to_be_visible()

    run_id = wait_for_green_run(stack, "pg_backup_to_gcs")
    page.goto(f"{stack.url}/dags/pg_backup_to_gcs/runs/{run_id}")
    expect(page.get_by_text("success").first).to_be_visible()
    shoot(page, "green-run.png")

    # The backup is in the emulator: an artifact and its manifest, with the rows and no secret.
    bucket = gcs.client().bucket(gcs_bucket)
    names = sorted(b.name for b in bucket.list_blobs(prefix=f"browser/{DATABASE}/"))
    assert len(names) == 2, names
    artifact, manifest_name = names
    assert manifest_name == artifact + ".manifest.json"
    manifest = json.loads(bucket.blob(manifest_name).download_as_bytes())
    assert manifest["database"] == DATABASE
    assert {(r["table"], r["rows"]) for r in manifest["row_counts"]} == {("orders", 321)}
    assert PASSWORD not in json.dumps(manifest)


def wait_for_green_run(stack: AirflowStack, dag_id: str, timeout: float = 180.0) -> str:
    """The run the form started, once it succeeded (fails at once if it failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        ours = [r for r in runs if r["run_type"] == "manual" and r["triggered_by"] == "ui"]
        if ours and ours[0]["state"] in ("success", "failed"):
            run = ours[0]
            assert run["state"] == "success", run
            assert run["conf"]["postgres_conn_id"] == CONN_ID
            return str(run["dag_run_id"])
        time.sleep(2)
    raise TimeoutError(f"no finished run of {dag_id} within {timeout} s")
