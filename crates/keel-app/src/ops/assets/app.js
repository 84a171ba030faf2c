// The ops console: plain JavaScript, no build step. Every number comes from /api/ops/* (JSON);
// the visible view is refreshed every REFRESH_MS without reloading the page. Text from the
// server is only ever set as textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 3000;
const VIEWS = ["tasks", "jobs", "watchers", "locks", "runtime", "instances", "audit"];
let current = "tasks";
let selectedJob = null;
let timer = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 || response.status === 403) {
    location.reload(); // the server answers with the sign-in or 403 page
    throw new Error("signed out");
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok || answer.success === false) {
    throw new Error((answer.error && answer.error.message) || ("HTTP " + response.status));
  }
  return answer.data;
}

function when(text) {
  if (!text) return "—";
  const d = new Date(text);
  const secs = Math.round((Date.now() - d.getTime()) / 1000);
  const rel = secs >= 0 ? ago(secs) + " ago" : "in " + ago(-secs);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") + " (" + rel + ")";
}
function ago(secs) {
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " min";
  if (secs < 86400) return Math.floor(secs / 3600) + " h";
  return Math.floor(secs / 86400) + " d";
}
function num(v, unit) { return v === null || v === undefined ? "—" : (Math.round(v * 100) / 100) + (unit || ""); }
function outcome(text) { return h("span", { class: "outcome o-" + text, "data-outcome": text }, text); }
function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}
function setStatus(text) { document.getElementById("status").textContent = text || ""; }

// Tasks

const runMessages = {};

async function renderTasks(root) {
  const tasks = await api("GET", "/api/ops/tasks");
  root.replaceChildren(...tasks.map((task) => {
    const button = h("button", { "data-testid": "run-now-" + task.name, onclick: () => runNow(task.name, button) }, "Run now");
    const runRow = (run) => h("tr", { "data-testid": "task-run" },
      h("td", {}, when(run.startedAt)), h("td", {}, outcome(run.outcome)), h("td", {}, run.trigger + (run.forced ? " (forced)" : "")),
      h("td", {}, num(run.durationMs, " ms")), h("td", {}, num(run.processed)), h("td", {}, num(run.rejected)),
      h("td", {}, run.host || "—"), h("td", {}, run.error || ""));
    const heads = ["started", "outcome", "trigger", "duration", "processed", "rejected", "host", "error"];
    return h("div", { class: "card-task", "data-testid": "task-" + task.name },
      h("h2", {}, task.name, button),
      h("div", { class: "meta" }, task.description),
      h("div", { class: "meta" }, "schedule: ", h("code", {}, task.schedule || "manual only"),
        task.enabled ? "" : " (disabled)", " · next run: ", task.nextRunAt ? when(task.nextRunAt) : "—",
        " · lock: ", h("code", {}, task.lock)),
      runMessages[task.name] ? h("div", { class: "msg", "data-testid": "run-result-" + task.name }, runMessages[task.name]) : null,
      task.running.length ? h("div", {}, h("b", {}, "Running now"), table(heads, task.running.map(runRow))) : null,
      h("b", {}, "Last runs"),
      task.recentRuns.length ? table(heads, task.recentRuns.map(runRow)) : h("p", { class: "meta" }, "never run"));
  }));
}

async function runNow(name, button) {
  button.disabled = true;
  try {
    const result = await api("POST", "/api/ops/tasks/" + encodeURIComponent(name) + "/run");
    runMessages[name] = name + ": " + result.message;
  } catch (e) {
    runMessages[name] = name + ": " + e.message;
  } finally {
    button.disabled = false;
  }
  refresh();
}

// Jobs

async function renderJobs() {
  const status = document.getElementById("job-filter").value;
  const data = await api("GET", "/api/ops/jobs?limit=100" + (status ? "&status=" + status : ""));
  const labels = { queued: "queued (pending)", running: "running", done: "done", dead: "dead" };
  document.getElementById("job-counts").replaceChildren(...Object.entries(labels).map(([k, label]) =>
    h("div", { class: "card", "data-testid": "count-" + k }, h("b", {}, data.counts[k]), h("span", {}, label))));
  const rows = data.jobs.map((job) => h("tr", { class: "clickable", "data-testid": "job-row", "data-job-id": job.id, onclick: () => showJob(job.id) },
    h("td", {}, h("code", {}, job.id)), h("td", {}, job.kind), h("td", {}, outcome(job.status)),
    h("td", {}, job.attempts + " / " + job.maxAttempts), h("td", {}, when(job.runAt)), h("td", {}, job.lastError || "")));
  document.getElementById("job-list").replaceChildren(data.jobs.length
    ? table(["id", "kind", "status", "attempts", "run at", "last error"], rows)
    : h("p", { class: "meta" }, "no jobs"));
  if (selectedJob) await showJob(selectedJob, true);
}

async function showJob(id, quiet) {
  selectedJob = id;
  const detail = document.getElementById("job-detail");
  let job;
  try {
    job = await api("GET", "/api/ops/jobs/" + encodeURIComponent(id));
  } catch (e) {
    if (!quiet) detail.replaceChildren(h("div", { class: "msg" }, e.message));
    return;
  }
  renderJobDetail(job);
}

function renderJobDetail(job, message) {
  const detail = document.getElementById("job-detail");
  const retry = job.status === "dead"
    ? h("button", { "data-testid": "retry-job", onclick: () => retryJob(job.id) }, "Retry")
    : null;
  detail.replaceChildren(h("div", { class: "card-task", "data-testid": "job-detail" },
    h("h2", {}, "Job ", h("code", {}, job.id), outcome(job.status), retry),
    message ? h("div", { class: "msg" }, message) : null,
    h("div", { class: "meta" }, "kind " + job.kind + " · attempts " + job.attempts + " / " + job.maxAttempts +
      " · run at " + when(job.runAt) + " · created " + when(job.createdAt) +
      (job.leaseOwner ? " · lease " + job.leaseOwner + " until " + when(job.leaseExpiresAt) : "")),
    h("b", {}, "Last error"), h("pre", {}, job.lastError || "none"),
    job.errors && job.errors.length ? [h("b", {}, "Failed attempts"), table(["attempt", "when", "error"],
      job.errors.map((e) => h("tr", {}, h("td", {}, num(e.attempt)), h("td", {}, when(e.at)), h("td", {}, e.error))))] : null,
    h("b", {}, "Payload"), h("pre", {}, JSON.stringify(job.payload, null, 2)),
    job.result ? [h("b", {}, "Result"), h("pre", {}, JSON.stringify(job.result, null, 2))] : null));
}

async function retryJob(id) {
  try {
    const job = await api("POST", "/api/ops/jobs/" + encodeURIComponent(id) + "/retry");
    renderJobDetail(job, "queued again: pending, fresh attempts");
  } catch (e) {
    setStatus("retry failed: " + e.message);
  }
  await renderJobs().catch(() => {});
}

async function purge(status) {
  if (!confirm("Delete every " + status + " job? This cannot be undone.")) return;
  try {
    const result = await api("POST", "/api/ops/jobs/purge", { status, confirm: true });
    setStatus(result.deleted + " " + status + " jobs deleted");
  } catch (e) {
    setStatus("purge failed: " + e.message);
  }
  refresh();
}

// Watchers, locks, instances, audit

async function renderWatchers(root) {
  const watchers = await api("GET", "/api/ops/watchers");
  root.replaceChildren(table(["watcher", "state (this replica)", "last event handled", "lag p99 (1 min)", "events", "restarts", "failing event", "poison events"],
    watchers.map((w) => h("tr", { "data-testid": "watcher-" + w.name },
      h("td", {}, w.name), h("td", {}, outcome(w.state), w.attempt ? " attempt " + w.attempt : ""),
      h("td", {}, when(w.lastEventAt)), h("td", {}, num(w.lagP99Ms, " ms")), h("td", { "data-testid": "events" }, w.eventsHandled),
      h("td", {}, w.restarts), h("td", {}, w.failingError || "none"),
      h("td", { "data-testid": "poison" }, w.poisonEvents.length
        ? w.poisonEvents.length + " set aside; newest: " + w.poisonEvents[0].op + " of " + (w.poisonEvents[0].documentId || "?") +
          " after " + num(w.poisonEvents[0].attempts) + " attempts: " + w.poisonEvents[0].error
        : "none")))));
}

async function renderLocks(root) {
  const locks = await api("GET", "/api/ops/locks");
  root.replaceChildren(locks.length ? table(["lock", "state", "holder", "fencing token", "acquired", "expires"],
    locks.map((l) => h("tr", { "data-testid": "lock-" + l.name },
      h("td", {}, h("code", {}, l.name)), h("td", {}, h("span", { class: "outcome o-" + (l.isHeld ? "running" : "done"), "data-outcome": l.isHeld ? "held" : "free" }, l.isHeld ? "held" : "free")),
      h("td", {}, l.holder || "—"), h("td", {}, num(l.token)), h("td", {}, when(l.acquiredAt)),
      h("td", {}, l.isHeld ? when(l.expiresAt) : "—")))) : h("p", { class: "meta" }, "no lock taken yet"));
}

async function renderInstances(root) {
  const instances = await api("GET", "/api/ops/instances");
  root.replaceChildren(table(["instance", "host", "pid", "roles", "version", "uptime", "last heartbeat", ""],
    instances.map((i) => h("tr", { "data-testid": "instance" },
      h("td", {}, h("code", {}, i.id)), h("td", {}, i.host), h("td", {}, i.pid), h("td", {}, i.roles.join(", ")),
      h("td", {}, i.version), h("td", {}, ago(i.uptimeSecs)), h("td", {}, when(i.lastHeartbeatAt)),
      h("td", {}, i.isSelf ? "this replica" : "", i.isStale ? outcome("stale") : "")))));
}

async function renderAudit(root) {
  const records = await api("GET", "/api/ops/audit");
  root.replaceChildren(records.length ? table(["when", "who", "action", "target", "outcome", "detail"],
    records.map((r) => h("tr", { "data-testid": "audit-row" },
      h("td", {}, when(r.at)), h("td", {}, r.actor), h("td", {}, r.action), h("td", {}, h("code", {}, r.target)),
      h("td", {}, outcome(r.outcome)), h("td", {}, r.detail || "")))) : h("p", { class: "meta" }, "no action yet"));
}

// Runtime

const COLORS = ["#2f5bd3", "#c62828", "#1a7f37", "#b26a00", "#7b3fc4", "#00838f"];

function chart(title, series, unit) {
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = Math.max(1e-9, ...all) * 1.1;
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const W = 400, H = 120;
  const box = svg("svg", { viewBox: "0 0 " + W + " " + (H + 14), preserveAspectRatio: "none" });
  box.append(svg("line", { x1: 0, y1: H, x2: W, y2: H, stroke: "#d9dde5" }));
  series.forEach((s, idx) => {
    const pts = s.values.map((v, i) => v === null ? null : (i * W / (n - 1)).toFixed(1) + "," + (H - v / max * H).toFixed(1)).filter(Boolean);
    if (pts.length) box.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[idx % COLORS.length], "stroke-width": 1.5 }));
  });
  const label = svg("text", { x: 2, y: H + 12, "font-size": 10, fill: "#667085" });
  label.textContent = "max " + num(max / 1.1, unit);
  box.append(label);
  return h("div", { class: "chart", "data-testid": "chart" }, h("h3", {}, title), box,
    h("div", { class: "legend" }, series.map((s, idx) => {
      const last = s.values.length ? s.values[s.values.length - 1] : null;
      return h("span", {}, h("i", { style: "background:" + COLORS[idx % COLORS.length] }), s.name + " " + num(last, unit));
    })));
}

function topSeries(points, key, field, count) {
  const totals = {};
  for (const p of points) for (const s of p[key]) totals[s.name] = (totals[s.name] || 0) + s.perSec;
  const names = Object.keys(totals).sort((a, b) => totals[b] - totals[a]).slice(0, count);
  return names.map((name) => ({ name, values: points.map((p) => {
    const s = p[key].find((x) => x.name === name);
    return s ? s[field] : (field === "perSec" ? 0 : null);
  }) }));
}

async function renderRuntime(root) {
  const data = await api("GET", "/api/ops/runtime");
  if (!data.metricsEnabled) { root.replaceChildren(h("p", { class: "meta" }, "metrics are disabled ([metrics] enabled = false)")); return; }
  const p = data.points;
  const latest = p.length ? p[p.length - 1] : { routes: [], storeOps: [] };
  root.replaceChildren(
    h("p", { class: "meta" }, "This replica, the last " + Math.round(p.length * data.intervalMs / 1000) + " s, one point per " + data.intervalMs / 1000 + " s."),
    h("div", { class: "charts" },
      chart("Scheduler lag (ms)", [{ name: "lag", values: p.map((x) => x.schedulerLagMs) }], " ms"),
      chart("Requests/s per route", topSeries(p, "routes", "perSec", 5), "/s"),
      chart("p99 latency per route (ms)", topSeries(p, "routes", "p99Ms", 5), " ms"),
      chart("Store operation p99 (ms)", topSeries(p, "storeOps", "p99Ms", 5), " ms"),
      chart("Worker pool", [{ name: "queued", values: p.map((x) => x.workerQueued) }, { name: "running", values: p.map((x) => x.workerRunning) }], "")),
    h("b", {}, "Last interval, per route"),
    table(["route", "requests/s", "p99"], latest.routes.map((r) => h("tr", {}, h("td", {}, h("code", {}, r.name)), h("td", {}, num(r.perSec)), h("td", {}, num(r.p99Ms, " ms"))))),
    h("b", {}, "Last interval, per store operation"),
    table(["operation", "ops/s", "p99"], latest.storeOps.map((r) => h("tr", {}, h("td", {}, h("code", {}, r.name)), h("td", {}, num(r.perSec)), h("td", {}, num(r.p99Ms, " ms"))))));
}

// Navigation and refresh

const RENDER = { tasks: renderTasks, jobs: renderJobs, watchers: renderWatchers, locks: renderLocks,
  runtime: renderRuntime, instances: renderInstances, audit: renderAudit };

async function refresh() {
  const root = document.getElementById("view-" + current);
  try {
    await RENDER[current](root);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = current;
  } catch (e) {
    if (e.message !== "signed out") setStatus("refresh failed: " + e.message);
  }
}

function show(view) {
  current = VIEWS.includes(view) ? view : "tasks";
  for (const v of VIEWS) document.getElementById("view-" + v).classList.toggle("active", v === current);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === current);
  setStatus("");
  delete document.body.dataset.loaded;
  refresh();
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("job-filter").addEventListener("change", () => refresh());
  document.getElementById("purge-done").addEventListener("click", () => purge("done"));
  document.getElementById("purge-dead").addEventListener("click", () => purge("dead"));
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  try {
    const me = await api("GET", "/api/ops/me");
    document.getElementById("who").textContent = me.email + " (admin by " + me.adminBy + ") · " + me.instance;
  } catch (e) { /* the refresh below reports it */ }
  show(location.hash.slice(1));
  timer = setInterval(refresh, REFRESH_MS);
});
