// The dpsd dashboard: plain JavaScript over the JSON API, refreshed every few seconds.
// The browser sends the API's Basic credentials itself (same origin).
"use strict";

const REFRESH_MS = 2000;
const HISTORY = 150; // samples kept per worker for the charts (5 minutes)
const history = {}; // worker -> [{t, processed, depth}]
let view = "jobs";

const $ = (id) => document.getElementById(id);
const text = (value) => (value === null || value === undefined ? "" : String(value));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function cell(row, value, className) {
  const td = row.insertCell();
  td.textContent = text(value);
  if (className) td.className = className;
  return td;
}

function button(parent, label, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.addEventListener("click", onClick);
  parent.appendChild(b);
  return b;
}

function say(message) {
  $("status").textContent = message;
}

/// Runs an action and shows its outcome until the next action (refreshes do not hide it).
async function act(label, work) {
  let outcome;
  try {
    await work();
    outcome = label + ": ok";
  } catch (e) {
    outcome = label + ": " + e.message;
  }
  $("notice").textContent = outcome;
  refresh();
}

const PREVIEW_N = 5;
let panelJob = null; // the job whose next fire times the panel shows

/// The panel under the jobs table: the job's next fire times, and a re-schedule form that
/// previews a new schedule (and zone) before it is sent.
async function openPanel(job) {
  panelJob = job.name;
  $("job-panel").hidden = false;
  $("job-panel-title").textContent = "Job " + job.name;
  $("job-schedule").value = job.schedule || "";
  $("job-timezone").value = job.timezone || "UTC";
  await showPreview(false);
}

/// Lists the next fire times: the job's as planned, or (`edited`) of the form's schedule
/// and zone, with nothing applied.
async function showPreview(edited) {
  const rows = $("job-times");
  rows.replaceChildren();
  let path = "/api/job/preview/" + encodeURIComponent(panelJob) + "?n=" + PREVIEW_N;
  if (edited) {
    path += "&schedule=" + encodeURIComponent($("job-schedule").value.trim());
    path += "&timezone=" + encodeURIComponent($("job-timezone").value.trim());
  }
  try {
    const preview = await api("GET", path);
    $("job-preview-note").textContent = (edited ? "Preview (not applied): " : "Planned: ") +
      (preview.schedule || "manual") + " in " + preview.timezone + (preview.times.length ? "" : ", no fire times");
    for (const t of preview.times) {
      const row = rows.insertRow();
      cell(row, t.utc);
      cell(row, t.local);
    }
  } catch (e) {
    $("job-preview-note").textContent = "Preview: " + e.message;
  }
}

async function showJobs() {
  const jobs = await api("GET", "/api/jobs");
  const rows = $("jobs-rows");
  rows.replaceChildren();
  for (const job of jobs) {
    const row = rows.insertRow();
    row.dataset.job = job.name;
    cell(row, job.name + (job.active ? "" : " (inactive)"));
    cell(row, (job.schedule || "manual") + (job.schedule && job.timezone !== "UTC" ? " (" + job.timezone + ")" : ""));
    cell(row, when(job.nextRunAt));
    cell(row, when(job.lastRunAt));
    const state = [job.isRunning ? "running" : job.lastStatus, job.paused ? "paused" : null].filter(Boolean);
    cell(row, state.join(", "), job.lastStatus || "").dataset.fact = "status";
    cell(row, job.failCount);
    const actions = row.insertCell();
    if (!job.active) continue;
    button(actions, "Run now", () => act("run " + job.name, () => api("POST", "/api/job/start/" + encodeURIComponent(job.name))));
    const verb = job.paused ? "resume" : "pause";
    button(actions, job.paused ? "Resume" : "Pause", () => act(verb + " " + job.name, () => api("POST", "/api/job/" + verb + "/" + encodeURIComponent(job.name))));
    button(actions, "Next runs / re-schedule", () => openPanel(job));
  }
}

function sparkline(values) {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + HISTORY + " 40");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => (HISTORY - values.length + i) + "," + (38 - (v / max) * 36).toFixed(1));
  const line = document.createElementNS(svgNs, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
  return svg;
}

function remember(worker) {
  const samples = (history[worker.name] = history[worker.name] || []);
  samples.push({ t: Date.now(), processed: worker.counters.processed, depth: worker.queueStats ? worker.queueStats.messages : 0 });
  if (samples.length > HISTORY) samples.shift();
  // Messages per second between consecutive samples.
  const rates = samples.slice(1).map((s, i) => Math.max(0, (s.processed - samples[i].processed) / ((s.t - samples[i].t) / 1000)));
  return { rates, depths: samples.map((s) => s.depth) };
}

async function showWorkers() {
  const workers = await api("GET", "/api/workers");
  const cards = $("workers-cards");
  cards.replaceChildren();
  const select = $("failed-worker");
  for (const worker of workers) {
    const { rates, depths } = remember(worker);
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.worker = worker.name;
    const title = document.createElement("h2");
    title.textContent = worker.name;
    card.appendChild(title);
    const facts = document.createElement("dl");
    const fact = (name, value) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = text(value);
      dd.dataset.fact = name;
      facts.append(dt, dd);
    };
    fact("replicas", worker.replicasRunning + " / " + worker.replicasWanted);
    fact("restarts", worker.restarts);
    fact("queue", worker.queue + (worker.queueStats ? " (" + worker.queueStats.messages + " ready, " + worker.queueStats.consumers + " consumers)" : ""));
    fact("processed", worker.counters.processed);
    fact("failed", worker.counters.failed + " (" + worker.counters.retried + " retried, " + worker.counters.parked + " parked)");
    if (worker.lastExit) fact("last exit", worker.lastExit);
    if (worker.configError) fact("config error", worker.configError);
    card.appendChild(facts);
    card.append("messages/s");
    card.appendChild(sparkline(rates));
    card.append("queue depth");
    card.appendChild(sparkline(depths));
    cards.appendChild(card);
    if (![...select.options].some((o) => o.value === worker.name)) select.add(new Option(worker.name, worker.name));
  }
}

async function showFailed() {
  const worker = $("failed-worker").value;
  const page = await api("GET", "/api/failed?limit=200" + (worker ? "&worker=" + encodeURIComponent(worker) : ""));
  const rows = $("failed-rows");
  rows.replaceChildren();
  for (const item of page.items) {
    const row = rows.insertRow();
    row.dataset.id = item.id;
    cell(row, item.id);
    cell(row, item.worker);
    cell(row, item.attempts);
    cell(row, when(item.lastFailedAt));
    cell(row, item.error, "error");
    const actions = row.insertCell();
    button(actions, "Inspect", () => {
      const pre = $("failed-body");
      pre.hidden = false;
      pre.textContent = JSON.stringify(item, null, 2);
    });
    button(actions, "Replay", () => act("replay " + item.id, () => api("POST", "/api/failed/" + encodeURIComponent(item.id) + "/replay")));
    button(actions, "Delete", () => {
      if (confirm("Discard " + item.id + "?")) act("delete " + item.id, () => api("DELETE", "/api/failed/" + encodeURIComponent(item.id)));
    });
  }
  $("failed-replay-all").textContent = "Replay all shown (" + page.total + ")";
}

async function showExecution(id) {
  const out = $("execution-result");
  out.replaceChildren();
  try {
    const e = await api("GET", "/api/executions/" + encodeURIComponent(id));
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    ["Worker", "State", "Status", "Attempts", "Started", "Took (ms)", "Error"].forEach((h) => cell(head, h));
    const body = table.createTBody();
    for (const s of e.stages) {
      const row = body.insertRow();
      [s.worker, s.state, s.status, s.attempts, when(s.startedAt), s.durationMs, s.error].forEach((v) => cell(row, v));
    }
    const summary = document.createElement("p");
    summary.textContent = e.executionId + ": state " + text(e.state) + ", " + e.status + " (" + e.stages.length + " stages)";
    out.append(summary, table);
  } catch (error) {
    out.textContent = error.message;
  }
}

async function refresh() {
  try {
    if (view === "jobs") await showJobs();
    if (view === "workers") await showWorkers();
    if (view === "failed") await showFailed();
    say("updated " + new Date().toLocaleTimeString());
  } catch (e) {
    say("cannot reach dpsd: " + e.message);
  }
}

function select(name) {
  view = ["jobs", "workers", "failed", "executions"].includes(name) ? name : "jobs";
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === view));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  refresh();
}

window.addEventListener("hashchange", () => select(location.hash.slice(1)));
$("job-preview").addEventListener("click", () => showPreview(true));
$("job-close").addEventListener("click", () => { $("job-panel").hidden = true; panelJob = null; });
$("job-panel").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = panelJob;
  const body = { interval: $("job-schedule").value.trim(), timezone: $("job-timezone").value.trim() };
  act("schedule " + name, async () => {
    await api("POST", "/api/job/schedule/" + encodeURIComponent(name), body);
    await showPreview(false);
  });
});
$("failed-worker").addEventListener("change", refresh);
$("failed-replay-all").addEventListener("click", () => {
  const worker = $("failed-worker").value;
  act("replay all", () => api("POST", "/api/failed/replay" + (worker ? "?worker=" + encodeURIComponent(worker) : "")));
});
$("execution-search").addEventListener("submit", (event) => {
  event.preventDefault();
  showExecution($("execution-id").value.trim());
});
select(location.hash.slice(1));
setInterval(refresh, REFRESH_MS);
// Workers' charts need samples even while another view is shown.
setInterval(() => view !== "workers" && api("GET", "/api/workers").then((ws) => ws.forEach(remember)).catch(() => {}), REFRESH_MS);
