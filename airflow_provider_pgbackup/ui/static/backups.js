// The Backups page: renders /pgbackup/api/backups, restores a backup and backs a database up now.
// Plain DOM (no framework, no build step). Every value shown comes from Airflow's metadata and is
// put into the page as text (textContent), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const here = window.location.pathname;
// Airflow's UI base ("/" or a sub-path): links to runs and logs are relative to it.
const AIRFLOW_BASE = here.slice(0, here.lastIndexOf("/pgbackup/") + 1) || "/";
let data = null;
let chosen = null; // the backup the restore dialog is for
let timer = null;

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function bytes(count) {
  if (count === null || count === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(count);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function seconds(value) {
  if (value === null || value === undefined) return "?";
  const s = Number(value);
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function when(iso) {
  if (!iso) return "?";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? String(iso) : moment.toLocaleString();
}

function airflowLink(path, text) {
  return el("a", { href: AIRFLOW_BASE + path, target: "_top" }, text);
}

function say(...parts) {
  const box = document.getElementById("message");
  box.replaceChildren(...parts.map((p) => (p instanceof Node ? p : document.createTextNode(String(p)))));
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json", Accept: "application/json" } : { Accept: "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (err) {
    payload = null;
  }
  if (!response.ok) {
    const detail = payload && payload.detail ? payload.detail : response.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return payload;
}

// --------------------------------------------------------------------------------------- the chart
function chart(group) {
  const points = group.backups.slice().reverse(); // oldest first
  const width = Math.max(480, Math.min(1600, (document.getElementById("databases").clientWidth || 760) - 30));
  const height = 170;
  const left = 56;
  const right = 56;
  const top = 24;
  const bottom = 28;
  const times = points.map((b) => new Date(b.finished_at).getTime());
  const minT = Math.min(...times);
  const maxT = Math.max(...times);
  const x = (i) =>
    left + (maxT > minT ? ((times[i] - minT) / (maxT - minT)) : points.length > 1 ? i / (points.length - 1) : 0.5) * (width - left - right);
  const sizes = points.map((b) => Number(b.size_bytes || 0));
  const durations = points.map((b) => Number(b.duration_seconds || 0));
  const maxSize = Math.max(...sizes, 1);
  const maxDuration = Math.max(...durations, 0.001);
  const ySize = (v) => top + (1 - v / maxSize) * (height - top - bottom);
  const yDuration = (v) => top + (1 - v / maxDuration) * (height - top - bottom);
  const label = `Size and duration of the ${points.length} backups of ${group.database} over time`;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  root.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom }));
  root.append(svg("text", { x: 4, y: top + 8 }, bytes(maxSize)));
  root.append(svg("text", { x: 4, y: height - bottom }, "size"));
  root.append(svg("text", { x: width - right + 4, y: top + 8 }, seconds(maxDuration)));
  root.append(svg("text", { x: width - right + 4, y: height - bottom }, "duration"));
  if (points.length) {
    root.append(svg("text", { x: left, y: height - 8 }, when(points[0].finished_at)));
    if (points.length > 1) root.append(svg("text", { x: width - right, y: height - 8, "text-anchor": "end" }, when(points[points.length - 1].finished_at)));
  }
  const legend = svg("text", { x: left, y: 10 }, "— size   - - duration   ○ sudden drop (under half the previous backups' median)");
  root.append(legend);
  const path = (ys) => ys.map((y, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y.toFixed(1)}`).join(" ");
  root.append(svg("path", { class: "size", d: path(sizes.map(ySize)) }));
  root.append(svg("path", { class: "duration", d: path(durations.map(yDuration)) }));
  points.forEach((b, i) => {
    const tick = svg("circle", { class: "duration-dot", cx: x(i).toFixed(1), cy: yDuration(durations[i]).toFixed(1), r: 2.5 });
    tick.append(svg("title", {}, `${when(b.finished_at)}: ${seconds(b.duration_seconds)}`));
    root.append(tick);
    const dot = svg("circle", { class: "dot", cx: x(i).toFixed(1), cy: ySize(sizes[i]).toFixed(1), r: 3.5, "data-size": sizes[i] });
    dot.append(svg("title", {}, `${when(b.finished_at)}: ${bytes(b.size_bytes)} in ${seconds(b.duration_seconds)}`));
    root.append(dot);
    if (b.size_drop !== null && b.size_drop !== undefined) {
      const ring = svg("circle", { class: "drop", cx: x(i).toFixed(1), cy: ySize(sizes[i]).toFixed(1), r: 8 });
      ring.append(svg("title", {}, `Sudden drop: ${Math.round(b.size_drop * 100)} % of the previous backups' median size`));
      root.append(ring);
    }
  });
  return root;
}

// ----------------------------------------------------------------------------------------- a table
function verdictCell(backup) {
  const cell = el("td", { class: "restore" });
  const verdict = backup.restore;
  if (verdict) {
    const identical = verdict.verdict === "IDENTICAL" || verdict.verdict === "ROW COUNTS MATCH";
    cell.append(el("span", { class: identical ? "verdict-identical" : "verdict-different" }, verdict.verdict));
    const subset = verdict.subset
      ? [verdict.subset.tables.length ? `tables ${verdict.subset.tables.join(", ")}` : null, verdict.subset.schemas.length ? `schemas ${verdict.subset.schemas.join(", ")}` : null]
          .filter(Boolean)
          .join("; ")
      : "";
    cell.append(
      el("div", { class: "note" }, `${verdict.dropped_after ? "drill" : "into"} ${verdict.restored_into || "?"}`, subset ? ` (${subset})` : "", `, ${when(verdict.finished_at)}`),
    );
    if (verdict.differences && verdict.differences.length) {
      cell.append(
        el(
          "ul",
          { class: "differences" },
          verdict.differences.map((d) => el("li", {}, `${d.kind} ${d.object}: expected ${d.expected}, found ${d.found}`)),
          verdict.differences_count > verdict.differences.length ? el("li", {}, `… ${verdict.differences_count - verdict.differences.length} more`) : null,
        ),
      );
    }
    if (verdict.links && verdict.links.log) cell.append(airflowLink(verdict.links.log, "log"));
  }
  for (const run of backup.restore_runs || []) {
    cell.append(el("div", { class: "note" }, `restore into ${run.target_database || "?"}: ${run.state} `, run.links.run ? airflowLink(run.links.run, "run") : null));
  }
  if (!verdict && !(backup.restore_runs || []).length) cell.append(el("span", { class: "note" }, "never restored"));
  return cell;
}

function backupRow(group, backup) {
  const links = backup.links || {};
  const where = el("td", { class: "where" }, backup.artifact_uri);
  if (backup.object_url) where.append(" ", el("a", { href: backup.object_url, target: "_blank", rel: "noopener noreferrer" }, "object"));
  const restoreButton = el(
    "button",
    {
      type: "button",
      disabled: !(data && data.restore_dag && data.restore_dag.can_trigger),
      title: data && data.restore_dag && data.restore_dag.can_trigger ? "Restore this backup into a new database" : "You may not trigger the restore DAG",
      onclick: () => openRestore(group, backup),
    },
    "Restore…",
  );
  return el(
    "tr",
    { "data-artifact": backup.artifact_uri },
    el("td", {}, when(backup.finished_at)),
    el("td", {}, bytes(backup.size_bytes), backup.size_drop !== null && backup.size_drop !== undefined ? el("div", { class: "drop-flag" }, `sudden drop (${Math.round(backup.size_drop * 100)} %)`) : null),
    el("td", {}, seconds(backup.duration_seconds)),
    el("td", {}, backup.format || "?", el("div", { class: "note" }, backup.compression || "?", backup.encrypted ? ", encrypted (age)" : ", not encrypted")),
    where,
    el("td", {}, backup.verified ? el("span", { class: "yes" }, "verified") : el("span", { class: "no" }, "not verified"), backup.held ? el("div", { class: "drop-flag" }, "held: it shrank (shrink guard)") : null, backup.checks.length ? el("div", { class: "note checks" }, backup.checks.join(", ")) : null),
    verdictCell(backup),
    el("td", {}, links.run ? airflowLink(links.run, "run") : null, " ", links.log ? airflowLink(links.log, "log") : null),
    el("td", {}, restoreButton),
  );
}

function databaseSection(group) {
  const f = group.freshness;
  const freshness = f.newest_verified
    ? el("span", { class: `freshness ${f.fresh ? "fresh" : "stale"}` }, `newest verified backup ${seconds(f.age_seconds)} old (target ${seconds(f.target_seconds)}): ${f.fresh ? "fresh" : "stale"}`)
    : el("span", { class: "freshness stale" }, "no verified backup");
  const backUp = el(
    "button",
    {
      type: "button",
      class: "primary",
      disabled: !group.can_back_up,
      title: group.can_back_up ? `Run ${group.backup_dag.dag_id} again for this database` : "You may not trigger the DAG that made these backups",
      onclick: (event) => backUpNow(group, event.currentTarget),
    },
    "Back up now",
  );
  const title = `${group.database} on ${group.connection}${group.server ? ` (${group.server})` : ""}`;
  return el(
    "section",
    { class: "database", "aria-label": title },
    el("header", {}, el("h2", {}, title), freshness, backUp),
    chart(group),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["Finished", "Size", "Duration", "Format", "Where", "Verified", "Last restore", "Task", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, group.backups.map((b) => backupRow(group, b))),
    ),
  );
}

function render() {
  const root = document.getElementById("databases");
  root.removeAttribute("aria-busy");
  document.getElementById("refreshed").textContent = `Refreshed ${when(data.generated_at)}.`;
  if (!data.databases.length) {
    root.replaceChildren(el("p", {}, "No backup reported yet. Give a backup task an outlet Asset(..., group=\"pgbackup\") (the example DAG pg_backup_to_gcs has one), run it, and its backups appear here."));
    return;
  }
  root.replaceChildren(...data.databases.map(databaseSection));
}

function busy() {
  return (data ? data.databases : []).some((g) => g.backups.some((b) => (b.restore_runs || []).some((r) => r.state === "queued" || r.state === "running")));
}

async function refresh() {
  clearTimeout(timer);
  try {
    data = await call("GET", "api/backups");
    render();
  } catch (err) {
    document.getElementById("databases").replaceChildren(el("p", { class: "error" }, `Could not load the backups: ${err.message}`));
  }
  timer = setTimeout(refresh, busy() ? 3000 : 15000);
}

// --------------------------------------------------------------------------------------- actions
function names(text) {
  return text.split(",").map((n) => n.trim()).filter(Boolean);
}

function defaultTarget(backup) {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").slice(0, 13).replace("T", "_");
  const base = (backup.database || "restored").replace(/[^A-Za-z0-9_]+/g, "_").slice(0, 40);
  return `${base}_restore_${stamp}`.toLowerCase();
}

function openRestore(group, backup) {
  chosen = backup;
  const form = document.getElementById("restore-form");
  document.getElementById("restore-backup").textContent = `${backup.artifact_uri} (${backup.format}, ${bytes(backup.size_bytes)}, finished ${when(backup.finished_at)})`;
  form.elements.target_conn_id.value = backup.postgres_conn_id || group.connection || "postgres_default";
  form.elements.target_database.value = defaultTarget(backup);
  for (const name of ["tables", "schemas"]) {
    form.elements[name].value = "";
    form.elements[name].disabled = !backup.restorable_in_part;
  }
  document.getElementById("restore-hint").dataset.plain = backup.restorable_in_part ? "" : "plain SQL restores whole";
  document.getElementById("restore-error").textContent = "";
  document.getElementById("restore-dialog").showModal();
}

async function submitRestore(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const submit = document.getElementById("restore-submit");
  submit.disabled = true;
  try {
    const run = await call("POST", "api/restore", {
      artifact_uri: chosen.artifact_uri,
      target_conn_id: form.elements.target_conn_id.value.trim(),
      target_database: form.elements.target_database.value.trim(),
      tables: names(form.elements.tables.value),
      schemas: names(form.elements.schemas.value),
    });
    document.getElementById("restore-dialog").close();
    say(`Restore of ${chosen.artifact_uri} into ${form.elements.target_database.value.trim()} started: `, airflowLink(run.links.run, run.run_id));
    await refresh();
  } catch (err) {
    document.getElementById("restore-error").textContent = err.message;
  } finally {
    submit.disabled = false;
  }
}

async function backUpNow(group, button) {
  button.disabled = true;
  try {
    const run = await call("POST", "api/backup", { connection: group.connection, database: group.database });
    say(`Backup of ${group.database} started: `, airflowLink(run.links.run, `${run.dag_id} ${run.run_id}`));
  } catch (err) {
    say(el("span", { class: "error" }, `Could not start a backup of ${group.database}: ${err.message}`));
  } finally {
    button.disabled = false;
  }
}

document.getElementById("restore-form").addEventListener("submit", submitRestore);
document.getElementById("restore-cancel").addEventListener("click", () => document.getElementById("restore-dialog").close());
refresh();
