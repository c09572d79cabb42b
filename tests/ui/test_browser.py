"""A real browser against the stack `make ui` starts: what a new user does, click by click.

Playwright drives Debian's ``chromium`` (``make test`` installs it; browser downloads cannot work here).
One journey: sign in, create a Postgres connection through Admin -> Connections -> Add (the ``postgres``
type the postgres provider registers; its Test button is on), trigger ``pg_backup_to_gcs`` from its
trigger form with that connection, wait for a green run and find the backup in the GCS emulator; then
open Browse -> Backups, see the backup's row and chart, restore one table of it into a new database
through the Restore... form and see the IDENTICAL verdict appear. Screenshots go to ``docs/browser/``
with ``PGBACKUP_SCREENSHOTS=docs`` (a temporary folder otherwise).
"""

from __future__ import annotations

import json
import os
import re
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
from tests.ui.conftest import UiStack

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
RESTORED = "browser_restored"
CONN_ID = "pg_browser"


@pytest.fixture
def stack(ui_stack: UiStack, pg18: PgCluster) -> Iterator[AirflowStack]:
    """The shared stack, and a database of two tables for the user to back up (one to restore)."""
    for name in (DATABASE, RESTORED):
        pg18.drop_database(name)
    pg18.create_database(DATABASE)
    pg18.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 321) g", dbname=DATABASE)
    pg18.execute("CREATE TABLE customers AS SELECT g AS id FROM generate_series(1, 12) g", dbname=DATABASE)
    yield ui_stack.airflow
    for name in (DATABASE, RESTORED):
        pg18.drop_database(name)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (make browser)")
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait as long as actions do: a busy 2-core machine answers slowly (5 s by default).
    expect.set_options(timeout=30_000)
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


def test_a_user_backs_up_a_database_and_restores_a_table_of_it_in_the_browser(
    stack: AirflowStack, ui_stack: UiStack, page: Any, pg18: PgCluster, gcs: GCSEmulator
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
    listed = page.get_by_role("row").filter(has_text=CONN_ID)
    expect(listed.get_by_role("button", name="Test Connection")).to_be_enabled()  # test_connection is on
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
    field(dialog, "Bucket").fill(ui_stack.bucket)
    field(dialog, "Prefix").fill("browser")
    compression = dialog.get_by_role("group").filter(has_text=re.compile("^Compression"))
    expect(compression.get_by_role("combobox")).to_be_visible()  # a choice, not free text
    expect(compression).to_contain_text("gzip, level 6")
    expect(dialog.get_by_text("Stream straight to GCS")).to_have_count(0)  # no legacy toggle
    shoot(page, "trigger-backup.png")
    dialog.get_by_role("button", name="Trigger").click()
    expect(page.get_by_text("Dag Run Triggered").first).to_be_visible()

    run_id = wait_for_green_run(stack, "pg_backup_to_gcs")
    page.goto(f"{stack.url}/dags/pg_backup_to_gcs/runs/{run_id}")
    expect(page.get_by_text("success").first).to_be_visible()
    shoot(page, "green-run.png")

    # The backup is in the emulator: an artifact and its manifest, with the rows and no secret.
    bucket = gcs.client().bucket(ui_stack.bucket)
    names = sorted(b.name for b in bucket.list_blobs(prefix=f"browser/{DATABASE}/"))
    assert len(names) == 2, names
    artifact, manifest_name = names
    assert manifest_name == artifact + ".manifest.json"
    manifest = json.loads(bucket.blob(manifest_name).download_as_bytes())
    assert manifest["database"] == DATABASE
    assert {(r["table"], r["rows"]) for r in manifest["row_counts"]} == {("orders", 321), ("customers", 12)}
    assert PASSWORD not in json.dumps(manifest)

    # Browse -> Backups: the page lists the backup, with its chart, inside Airflow's own frame.
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Backups").click()
    frame = page.frame_locator("iframe")
    ours = frame.get_by_role("region", name=re.compile(f"^{re.escape(DATABASE)} on {CONN_ID} "))
    expect(ours).to_be_visible()
    expect(ours.get_by_role("img", name=re.compile("^Size and duration of the 1 backups"))).to_be_visible()
    row = ours.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"gs://{ui_stack.bucket}/{artifact}")
    expect(row).to_contain_text("verified")
    expect(row).to_contain_text("never restored")
    expect(ours).to_contain_text("fresh")
    shoot(page, "backups-page.png")

    # Restore... one table of it into a new database, through the form.
    row.get_by_role("button", name="Restore…").click()
    form = frame.get_by_role("dialog", name="Restore a backup")
    expect(form.get_by_role("textbox", name="Target connection")).to_have_value(CONN_ID)
    form.get_by_role("textbox", name="New database").fill(RESTORED)
    form.get_by_role("textbox", name="Tables").fill("orders")
    shoot(page, "restore-form.png")
    form.get_by_role("button", name="Start restore").click()
    expect(frame.get_by_role("status")).to_contain_text(f"into {RESTORED} started")
    expect(row).to_contain_text("IDENTICAL", timeout=180_000)  # the page refreshes while it runs
    expect(row).to_contain_text(f"into {RESTORED} (tables orders)")
    row.scroll_into_view_if_needed()
    shoot(page, "restore-identical.png")
    restored = pg18.connect(RESTORED)
    tables = restored.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
    ).fetchall()
    assert tables == [("orders",)]  # only the table asked for
    assert restored.execute("SELECT count(*) FROM orders").fetchone() == (321,)
    restored.close()


def wait_for_green_run(stack: AirflowStack, dag_id: str, timeout: float = 180.0) -> str:
    """The run the form started, once it succeeded (fails at once if it failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        ours = [
            r
            for r in runs
            if r["run_type"] == "manual"
            and r["triggered_by"] == "ui"
            and (r.get("conf") or {}).get("postgres_conn_id") == CONN_ID
        ]
        if ours and ours[0]["state"] in ("success", "failed"):
            run = ours[0]
            assert run["state"] == "success", run
            assert run["conf"]["postgres_conn_id"] == CONN_ID
            return str(run["dag_run_id"])
        time.sleep(2)
    raise TimeoutError(f"no finished run of {dag_id} within {timeout} s")
