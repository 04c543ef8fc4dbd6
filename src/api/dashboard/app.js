// The dpsd dashboard: plain JavaScript over the JSON API (no build step), one page per hash
// route, refreshed every few seconds while the tab is visible. The browser sends the API's
// Basic credentials itself (same origin). Charts are uPlot (vendor/, MIT licence).
"use strict";

const REFRESH_MS = 3000;
const HISTORY_MAX_AGE_MS = 5000; // /api/history is read at most this often
const VIEWS = ["overview", "executions", "execution", "workers", "jobs", "failed"];
const route = { view: "overview", param: "" };

const $ = (id) => document.getElementById(id);
const text = (value) => (value === null || value === undefined ? "" : String(value));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const enc = encodeURIComponent;

/// Makes an element: `el("a", {href: "#x", textContent: "x"}, child...)`; `data` sets dataset.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "data") Object.assign(node.dataset, value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(data.error || response.statusText, response.status);
  return data;
}

/// Replaces a container's children only when what it shows changed (`signature`), and gives
/// the focus back to the control that had it, so a refresh never moves a keyboard user.
function rebuild(container, signature, build) {
  if (container.dataset.signature === signature) return;
  container.dataset.signature = signature;
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : null;
  container.replaceChildren();
  build(container);
  const again = key && container.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (again) again.focus();
}

/// A table cell; it carries its column's heading (`data-label`), which a phone shows in
/// front of it when the rows stack.
function cell(row, value, className) {
  const td = row.insertCell();
  const table = row.closest("table");
  const heading = table && table.tHead ? table.tHead.rows[0].cells[td.cellIndex] : null;
  if (heading) td.dataset.label = heading.textContent;
  if (value instanceof Node) td.append(value);
  else td.textContent = text(value);
  if (className) td.className = className;
  return td;
}

function button(label, key, onClick, className) {
  const b = el("button", { type: "button", textContent: label, data: { key } });
  if (className) b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

const badge = (status) => el("span", { class: "badge " + text(status), textContent: text(status) || "none" });

/// Runs an action and shows its outcome in the live notice until the next action.
async function act(label, work) {
  let outcome;
  try {
    const answer = await work();
    outcome = label + ": " + (typeof answer === "string" ? answer : "ok");
  } catch (e) {
    outcome = label + ": " + e.message;
  }
  $("notice").textContent = outcome;
  await refresh();
}

/// "replayed 3, failed 0" from a counting answer such as `{"replayed":3,"failed":0}`.
const counts = (answer) => Object.entries(answer).map(([k, v]) => k + " " + v).join(", ");

/// The confirmation dialog: resolves true when the operator confirms `question`.
function confirmAction(question, verb) {
  const dialog = $("confirm");
  $("confirm-text").textContent = question;
  $("confirm-ok").textContent = verb;
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

// ---- data shared by the pages -------------------------------------------------------------

let historyCache = { at: 0, minutes: 0, data: null, error: null };

/// `/api/history` as `{worker: [{t (seconds), processed, failed, ..., p50, p95}]}`, or an
/// error: a page that cannot have it says so instead of drawing anything.
async function history(minutes) {
  const fresh = Date.now() - historyCache.at < HISTORY_MAX_AGE_MS && historyCache.minutes >= minutes;
  if (!fresh) {
    try {
      historyCache = { at: Date.now(), minutes, data: normaliseHistory(await api("GET", "/api/history?minutes=" + minutes)), error: null };
    } catch (e) {
      historyCache = { at: Date.now(), minutes, data: null, error: e.message };
    }
  }
  return historyCache;
}

/// Accepts the history document's workers as an object by name or as an array of
/// `{worker, points}`; each point's time as epoch seconds, milliseconds or an ISO string.
function normaliseHistory(doc) {
  const byName = {};
  const workers = doc.workers || doc;
  const entries = Array.isArray(workers) ? workers.map((w) => [w.worker || w.name, w.points]) : Object.entries(workers);
  for (const [name, points] of entries) {
    byName[name] = (points || []).map((p) => {
      const raw = p.t ?? p.at ?? p.time;
      const t = typeof raw === "string" ? Date.parse(raw) / 1000 : raw > 1e11 ? raw / 1000 : raw;
      const service = p.serviceTime || p.serviceMs || {};
      return {
        t, processed: p.processed, failed: p.failed, retried: p.retried, parked: p.parked,
        depth: p.queueDepth ?? p.queueMessages ?? p.depth,
        p50: service.p50 ?? p.p50, p95: service.p95 ?? p.p95, p99: service.p99 ?? p.p99,
      };
    });
  }
  return byName;
}

/// Per-second rates of a cumulative counter between consecutive points (null at the first).
function rates(points, field) {
  return points.map((p, i) => {
    if (i === 0) return null;
    const dt = p.t - points[i - 1].t;
    const dv = (p[field] ?? 0) - (points[i - 1][field] ?? 0);
    return dt > 0 ? Math.max(0, dv) / dt : null;
  });
}

/// How much a cumulative counter grew over the points (a daemon restart starts it at 0).
function growth(points, field) {
  let total = 0;
  for (let i = 1; i < points.length; i++) total += Math.max(0, (points[i][field] ?? 0) - (points[i - 1][field] ?? 0));
  return total;
}

function fillWorkerChoices(workers) {
  for (const select of document.querySelectorAll(".worker-choice")) {
    for (const worker of workers) {
      if (![...select.options].some((o) => o.value === worker.name)) select.add(new Option(worker.name, worker.name));
    }
  }
}

const needsAttention = (w) => w.replicasRunning !== w.replicasWanted || w.paused === true || !!w.configError;

// ---- overview -----------------------------------------------------------------------------

let lastSample = null; // {t, processed}: a rate from two polls while history is unavailable

function figure(fact, value, label, href) {
  return el("a", { class: "figure", href, data: { fact, key: "figure:" + fact } },
    el("span", { class: "value", textContent: text(value) }), el("span", { class: "label", textContent: label }));
}

function item(list, href, label, detail, key) {
  list.append(el("li", { data: { key } }, el("a", { href, textContent: label }), detail ? " " + detail : ""));
}

async function readiness() {
  const response = await fetch("/readyz");
  return response.json();
}

async function showOverview() {
  const hourAgo = new Date(Date.now() - 3600_000).toISOString();
  const [workers, jobs, failed, ready, parkedRecent, retrying, hist] = await Promise.all([
    api("GET", "/api/workers"), api("GET", "/api/jobs"), api("GET", "/api/failed?limit=1"), readiness(),
    api("GET", "/api/executions?status=parked&limit=10&since=" + enc(hourAgo)).catch((e) => ({ error: e.message })),
    api("GET", "/api/executions?status=retrying&limit=10&since=" + enc(hourAgo)).catch((e) => ({ error: e.message })),
    history(60),
  ]);
  fillWorkerChoices(workers);
  const sum = (field) => workers.reduce((n, w) => n + (w.counters[field] || 0), 0);
  const attention = workers.filter(needsAttention);
  const failedJobs = jobs.filter((j) => j.lastStatus === "failed");
  let rate = "…";
  let failedHour = "n/a";
  if (hist.data) {
    const recent = Object.values(hist.data).map((points) => points.filter((p) => p.t >= Date.now() / 1000 - 60));
    rate = (recent.reduce((n, points) => n + growth(points, "processed"), 0) / 60).toFixed(1);
    failedHour = Object.values(hist.data).reduce((n, points) => n + growth(points, "failed"), 0);
  } else if (lastSample) {
    rate = Math.max(0, (sum("processed") - lastSample.processed) / ((Date.now() - lastSample.t) / 1000)).toFixed(1);
  }
  lastSample = { t: Date.now(), processed: sum("processed") };
  const figures = [
    ["processed", sum("processed"), "messages processed", "#workers"],
    ["rate", rate, "messages/s, last minute", "#workers"],
    ["failed", sum("failed"), "failed attempts", "#workers"],
    ["failed-hour", failedHour, "failed attempts, last hour", "#executions"],
    ["parked", failed.total, "parked messages", "#failed"],
    ["workers", workers.length, "workers", "#workers"],
    ["attention", attention.length, "workers needing attention", "#workers"],
    ["jobs", jobs.length, "jobs", "#jobs"],
    ["jobs-failed", failedJobs.length, "jobs whose last run failed", "#jobs"],
  ];
  rebuild($("overview-figures"), JSON.stringify(figures), (box) => figures.forEach((f) => box.append(figure(...f))));
  rebuild($("attention-workers"), JSON.stringify(attention), (list) => {
    for (const w of attention) {
      const why = [w.replicasRunning !== w.replicasWanted ? `${w.replicasRunning} of ${w.replicasWanted} replicas` : null,
        w.paused ? "paused" : null, w.configError ? "configuration error" : null].filter(Boolean).join(", ");
      item(list, "#workers/" + enc(w.name), w.name, why, "w:" + w.name);
    }
    if (!attention.length) list.append(el("li", { textContent: "every worker at its replica count, none paused" }));
  });
  rebuild($("attention-jobs"), JSON.stringify(failedJobs), (list) => {
    for (const j of failedJobs) item(list, "#jobs/" + enc(j.name), j.name, "failed " + when(j.lastFinishedAt || j.lastRunAt) + ": " + text(j.failReason), "j:" + j.name);
    if (!failedJobs.length) list.append(el("li", { textContent: "no job failed its last run" }));
  });
  const byWorker = workers.filter((w) => w.counters.parked > 0);
  rebuild($("attention-parked"), JSON.stringify([failed.total, byWorker.map((w) => w.name)]), (list) => {
    list.append(el("li", {}, el("a", { href: "#failed", textContent: failed.total + " parked in all" })));
    for (const w of byWorker) item(list, "#failed/" + enc(w.name), w.name, "parked " + w.counters.parked + " since the daemon started", "p:" + w.name);
  });
  const recent = [parkedRecent, retrying];
  rebuild($("attention-failures"), JSON.stringify(recent), (list) => {
    const error = recent.find((page) => page.error);
    if (error) list.append(el("li", { textContent: "executions unavailable: " + error.error }));
    for (const page of recent) {
      for (const e of page.items || []) item(list, "#execution/" + enc(e.executionId), e.executionId, e.status + " at " + text(e.worker) + ": " + text(e.error), "e:" + e.executionId);
    }
    if (!list.children.length) list.append(el("li", { textContent: "no execution parked or retrying in the last hour" }));
  });
  rebuild($("backing"), JSON.stringify(ready), (list) => {
    list.append(el("li", { data: { fact: "rabbitmq" } }, badge(ready.rabbitmq ? "ok" : "failed"), " RabbitMQ" + (ready.rabbitmqError ? ": " + ready.rabbitmqError : "")));
    list.append(el("li", { data: { fact: "store" } }, badge(ready.store ? "ok" : "failed"), " store"));
    for (const reason of ready.notReady || []) list.append(el("li", { textContent: "not ready: " + reason }));
  });
}

// ---- executions ---------------------------------------------------------------------------

let executionPages = { next: null, extra: 0 };

function executionQuery(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  const status = $("filter-status").value;
  const worker = $("filter-worker").value;
  if (status) params.set("status", status);
  if (worker) params.set("worker", worker);
  for (const [id, name] of [["filter-since", "since"], ["filter-until", "until"]]) {
    const value = $(id).value;
    if (value) params.set(name, new Date(value).toISOString());
  }
  if (cursor) params.set("cursor", cursor);
  return "/api/executions?" + params;
}

function executionRow(rows, e) {
  const row = rows.insertRow();
  row.dataset.execution = e.executionId;
  cell(row, el("a", { href: "#execution/" + enc(e.executionId), textContent: e.executionId, data: { key: "x:" + e.executionId } }));
  cell(row, badge(e.status)).dataset.fact = "status";
  cell(row, e.worker);
  cell(row, e.state);
  cell(row, e.attempts);
  cell(row, when(e.createdAt));
  cell(row, when(e.updatedAt));
  cell(row, e.error, "error");
}

/// The first page of the list, live; pages loaded with "Load older" stop the refresh of it,
/// so rows do not move away under the reader.
async function showExecutions(force) {
  if (executionPages.extra && !force) return;
  const rows = $("executions-rows");
  try {
    const page = await api("GET", executionQuery());
    executionPages = { next: page.next, extra: 0 };
    rebuild(rows, JSON.stringify(page.items), () => page.items.forEach((e) => executionRow(rows, e)));
    $("executions-note").textContent = page.items.length ? "" : "no execution matches";
    $("executions-more").hidden = !page.next;
  } catch (e) {
    rows.replaceChildren();
    rows.dataset.signature = "";
    $("executions-note").textContent = "executions unavailable: " + e.message;
    $("executions-more").hidden = true;
  }
}

async function loadOlder() {
  const page = await api("GET", executionQuery(executionPages.next));
  page.items.forEach((e) => executionRow($("executions-rows"), e));
  executionPages = { next: page.next, extra: executionPages.extra + 1 };
  $("executions-more").hidden = !page.next;
}

// ---- one execution ------------------------------------------------------------------------

const openResults = new Set(); // stage indexes whose result is shown

function stageItem(stage, index, span) {
  const started = Date.parse(stage.startedAt);
  const after = started - span.start;
  const offset = span.length > 0 ? Math.min(98, (after / span.length) * 100) : 0;
  const width = span.length > 0 ? Math.max(2, ((stage.durationMs || 0) / span.length) * 100) : 100;
  const bar = el("div", { class: "bar", "aria-hidden": "true" },
    el("span", { class: "bar-fill " + text(stage.status), style: `margin-left:${offset.toFixed(1)}%;width:${Math.min(100 - offset, width).toFixed(1)}%` }));
  const timing = `started ${when(stage.startedAt)}` + (index > 0 && !isNaN(after) ? ` (+${after} ms)` : "") +
    (stage.finishedAt ? `, took ${text(stage.durationMs)} ms` : ", running");
  const li = el("li", { class: "stage", data: { stage: String(index), worker: stage.worker } },
    el("p", { class: "stage-head" }, el("strong", { textContent: stage.worker }), " ", badge(stage.status),
      ` state ${text(stage.state)}, attempt${stage.attempts === 1 ? "" : "s"} ${text(stage.attempts)}`),
    bar,
    el("p", { class: "note", textContent: timing }),
    stage.error ? el("p", { class: "error", textContent: "error: " + stage.error }) : null);
  if (stage.result !== undefined && stage.result !== null) {
    const pre = el("pre", { textContent: JSON.stringify(stage.result, null, 2), hidden: !openResults.has(index), id: "result-" + index });
    const toggle = button(openResults.has(index) ? "Hide result" : "Show result", "result:" + index, () => {
      if (openResults.has(index)) openResults.delete(index);
      else openResults.add(index);
      pre.hidden = !openResults.has(index);
      toggle.textContent = pre.hidden ? "Show result" : "Hide result";
      toggle.setAttribute("aria-expanded", String(!pre.hidden));
    });
    toggle.setAttribute("aria-controls", pre.id);
    toggle.setAttribute("aria-expanded", String(!pre.hidden));
    li.append(toggle, pre);
  }
  return li;
}

async function showExecution(id) {
  let e;
  try {
    e = await api("GET", "/api/executions/" + enc(id));
  } catch (error) {
    $("execution-title").textContent = "Execution " + id;
    rebuild($("execution-summary"), "error:" + error.message, (box) => box.append(el("p", { class: "error", textContent: error.message })));
    $("execution-actions").replaceChildren();
    $("execution-timeline").replaceChildren();
    $("execution-timeline").dataset.signature = "";
    return;
  }
  $("execution-title").textContent = "Execution " + e.executionId;
  rebuild($("execution-summary"), JSON.stringify([e.status, e.state, e.worker, e.attempts, e.error, e.updatedAt]), (box) => {
    const facts = el("dl", { class: "facts" });
    const fact = (name, value) => facts.append(el("dt", { textContent: name }), el("dd", { data: { fact: name } }, value instanceof Node ? value : text(value)));
    fact("status", badge(e.status));
    fact("state", e.state);
    fact("worker", e.worker);
    fact("attempts", e.attempts);
    if (e.createdAt) fact("created", when(e.createdAt));
    fact("updated", when(e.updatedAt));
    if (e.error) fact("error", e.error);
    box.append(facts);
  });
  rebuild($("execution-actions"), JSON.stringify([e.executionId, e.status, e.worker]), (box) => {
    if (e.status !== "cancelled") {
      box.append(button("Cancel execution", "cancel", async () => {
        if (await confirmAction(`Cancel execution ${e.executionId}?`, "Cancel it")) {
          act("cancel " + e.executionId, async () => {
            const answer = await api("POST", "/api/executions/" + enc(e.executionId) + "/cancel");
            return answer.known === false ? "recorded as cancelled (not seen yet)" : "ok";
          });
        }
      }, "danger"));
    }
    if (e.status === "parked") {
      const parkedId = e.worker + ":" + e.executionId;
      box.append(" ", button("Replay", "replay", () => act("replay " + parkedId, () => api("POST", "/api/failed/" + enc(parkedId) + "/replay"))));
    }
  });
  const stages = e.stages || [];
  const starts = stages.map((s) => Date.parse(s.startedAt)).filter((t) => !isNaN(t));
  const ends = stages.map((s) => Date.parse(s.startedAt) + (s.durationMs || 0)).filter((t) => !isNaN(t));
  const span = { start: Math.min(...starts), length: Math.max(...ends) - Math.min(...starts) };
  rebuild($("execution-timeline"), JSON.stringify(stages), (list) => {
    stages.forEach((s, i) => list.append(stageItem(s, i, span)));
    if (!stages.length) list.append(el("li", { textContent: "no stage recorded yet" }));
  });
}

// ---- workers ------------------------------------------------------------------------------

const cards = {}; // worker -> {root, facts, toggle, charts: {name: uPlot}}
const CHARTS = [
  ["throughput", "Throughput (messages/s)", [["processed/s", "#2457c5"], ["failed/s", "#b3261e"]]],
  ["depth", "Queue depth (messages ready)", [["ready", "#6b4bb8"]]],
  ["service", "Service time (ms)", [["p50", "#1f7a4d"], ["p95", "#a15c00"]]],
];

function chartData(name, points) {
  const xs = points.map((p) => p.t);
  if (name === "throughput") return [xs, rates(points, "processed"), rates(points, "failed")];
  if (name === "depth") return [xs, points.map((p) => p.depth ?? null)];
  return [xs, points.map((p) => p.p50 ?? null), points.map((p) => p.p95 ?? null)];
}

function makeChart(holder, series) {
  const axis = { stroke: "#3d4654", grid: { stroke: "#e3e6eb" }, ticks: { stroke: "#c9ced6" } };
  return new uPlot({
    width: Math.max(200, holder.clientWidth), height: 120,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 1.5, spanGaps: true }))],
    axes: [axis, { ...axis, size: 44 }],
  }, [[], ...series.map(() => [])], holder);
}

function workerCard(name) {
  const facts = el("dl", { class: "facts" });
  const toggle = el("button", { type: "button", data: { key: "toggle:" + name } });
  const root = el("article", { class: "card", id: "worker-" + name, data: { worker: name }, "aria-labelledby": "worker-title-" + name },
    el("div", { class: "card-head" }, el("h3", { id: "worker-title-" + name, textContent: name }), toggle), facts);
  const card = { root, facts, toggle, charts: {}, holders: {}, paused: null };
  toggle.addEventListener("click", () => {
    const verb = card.paused ? "resume" : "pause";
    act(verb + " " + name, () => api("POST", "/api/workers/" + enc(name) + "/" + verb));
  });
  for (const [chart, title] of CHARTS) {
    const holder = el("div", { class: "chart", role: "img", "aria-label": title });
    card.holders[chart] = holder;
    root.append(el("figure", { data: { chart } }, el("figcaption", { textContent: title }), holder));
  }
  return card;
}

function updateFacts(card, w) {
  const rows = [
    ["replicas", w.replicasRunning + " / " + w.replicasWanted],
    ["pids", (w.pids || []).join(", ") || "none"],
    ["restarts", w.restarts],
    ["last exit", w.lastExit || "none"],
    ["queue", w.queue + (w.queueStats ? ` (${w.queueStats.messages} ready, ${w.queueStats.consumers} consumers)` : "")],
    ["processed", w.counters.processed],
    ["failed", `${w.counters.failed} (${w.counters.retried} retried, ${w.counters.parked} parked)`],
    ["in flight", w.counters.inFlight],
    ["paused", w.paused === null ? "unknown (store unavailable)" : w.paused ? "yes" : "no"],
  ];
  if (w.configError) rows.push(["config error", w.configError]);
  rebuild(card.facts, JSON.stringify(rows), (dl) => {
    for (const [name, value] of rows) dl.append(el("dt", { textContent: name }), el("dd", { textContent: text(value), data: { fact: name } }));
  });
  card.paused = w.paused;
  card.toggle.textContent = w.paused ? "Resume" : "Pause";
  card.toggle.setAttribute("aria-label", (w.paused ? "Resume" : "Pause") + " worker " + w.name);
  card.root.classList.toggle("attention", needsAttention(w));
}

function updateCharts(card, points) {
  for (const [name, title, series] of CHARTS) {
    const holder = card.holders[name];
    if (!points) {
      Object.values(card.charts).forEach((c) => c.destroy());
      card.charts = {};
      holder.replaceChildren(el("p", { class: "note", textContent: "history unavailable" }));
      continue;
    }
    if (!card.charts[name]) {
      holder.replaceChildren();
      card.charts[name] = makeChart(holder, series);
    }
    const data = chartData(name, points);
    card.charts[name].setData(data);
    const last = data.slice(1).map((ys, i) => {
      const value = ys.length ? ys[ys.length - 1] : null;
      return series[i][0] + " " + (value === null || value === undefined ? "none" : Number(value).toFixed(1));
    });
    holder.setAttribute("aria-label", `${title}, last ${points.length} points: now ${last.join(", ")}`);
  }
}

async function showWorkers() {
  const minutes = Number($("history-minutes").value);
  const [workers, hist] = await Promise.all([api("GET", "/api/workers"), history(minutes)]);
  fillWorkerChoices(workers);
  $("history-note").textContent = hist.error ? "history unavailable: " + hist.error : "";
  const box = $("workers-cards");
  const names = new Set(workers.map((w) => w.name));
  for (const [name, card] of Object.entries(cards)) {
    if (!names.has(name)) {
      card.root.remove();
      delete cards[name];
    }
  }
  const since = Date.now() / 1000 - minutes * 60;
  for (const w of workers) {
    const card = cards[w.name] || (cards[w.name] = workerCard(w.name));
    if (!card.root.isConnected) box.append(card.root);
    updateFacts(card, w);
    const points = hist.data ? (hist.data[w.name] || []).filter((p) => p.t >= since) : null;
    updateCharts(card, points);
  }
  if (route.param && cards[route.param] && !box.dataset.scrolled) {
    box.dataset.scrolled = "1";
    cards[route.param].root.scrollIntoView();
  }
}

window.addEventListener("resize", () => {
  for (const card of Object.values(cards)) {
    for (const [name, chart] of Object.entries(card.charts)) chart.setSize({ width: Math.max(200, card.holders[name].clientWidth), height: 120 });
  }
});

// ---- jobs ---------------------------------------------------------------------------------

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
  $("job-schedule").focus();
}

/// Lists the next fire times: the job's as planned, or (`edited`) of the form's schedule
/// and zone, with nothing applied.
async function showPreview(edited) {
  const rows = $("job-times");
  rows.replaceChildren();
  let path = "/api/job/preview/" + enc(panelJob) + "?n=" + PREVIEW_N;
  if (edited) {
    path += "&schedule=" + enc($("job-schedule").value.trim());
    path += "&timezone=" + enc($("job-timezone").value.trim());
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
  rebuild(rows, JSON.stringify(jobs), () => {
    for (const job of jobs) {
      const row = rows.insertRow();
      row.dataset.job = job.name;
      if (route.param === job.name) row.className = "chosen";
      cell(row, job.name + (job.active ? "" : " (inactive)"));
      cell(row, (job.schedule || "manual") + (job.schedule && job.timezone !== "UTC" ? " (" + job.timezone + ")" : ""));
      cell(row, when(job.nextRunAt));
      cell(row, when(job.lastRunAt));
      const state = [job.isRunning ? "running" : job.lastStatus, job.paused ? "paused" : null].filter(Boolean);
      const status = cell(row, state.join(", "), job.lastStatus || "");
      status.dataset.fact = "status";
      if (job.failReason && job.lastStatus === "failed") status.title = job.failReason;
      cell(row, job.failCount);
      const actions = cell(row, "", "actions");
      if (!job.active) continue;
      const name = job.name;
      actions.append(button("Run now", "run:" + name, () => act("run " + name, () => api("POST", "/api/job/start/" + enc(name)))));
      const verb = job.paused ? "resume" : "pause";
      actions.append(button(job.paused ? "Resume" : "Pause", "pause:" + name, () => act(verb + " " + name, () => api("POST", "/api/job/" + verb + "/" + enc(name)))));
      actions.append(button("Next runs / re-schedule", "panel:" + name, () => openPanel(job)));
    }
  });
}

// ---- failed messages ----------------------------------------------------------------------

let failedTotal = 0;

async function showFailed() {
  const worker = $("failed-worker").value;
  const [page, workers] = await Promise.all([
    api("GET", "/api/failed?limit=200" + (worker ? "&worker=" + enc(worker) : "")), api("GET", "/api/workers"),
  ]);
  fillWorkerChoices(workers);
  failedTotal = page.total;
  const rows = $("failed-rows");
  rebuild(rows, JSON.stringify(page.items), () => {
    for (const item of page.items) {
      const row = rows.insertRow();
      row.dataset.id = item.id;
      cell(row, item.executionId ? el("a", { href: "#execution/" + enc(item.executionId), textContent: item.id, data: { key: "open:" + item.id } }) : item.id);
      cell(row, item.worker);
      cell(row, item.attempts);
      cell(row, when(item.lastFailedAt));
      cell(row, item.error, "error");
      const actions = cell(row, "", "actions");
      actions.append(button("Inspect", "inspect:" + item.id, () => {
        const pre = $("failed-body");
        pre.hidden = false;
        pre.textContent = JSON.stringify(item, null, 2);
        pre.focus();
      }));
      actions.append(button("Replay", "replay:" + item.id, () => act("replay " + item.id, () => api("POST", "/api/failed/" + enc(item.id) + "/replay"))));
      actions.append(button("Delete", "delete:" + item.id, async () => {
        if (await confirmAction(`Delete parked message ${item.id} for good?`, "Delete")) {
          act("delete " + item.id, () => api("DELETE", "/api/failed/" + enc(item.id)));
        }
      }, "danger"));
    }
  });
  const scope = worker ? "of worker " + worker : "of every worker";
  $("failed-count").textContent = `${page.total} parked ${scope}` + (page.total > page.items.length ? `, the first ${page.items.length} shown` : "");
  $("failed-replay-all").textContent = `Replay all (${page.total})`;
  $("failed-delete-all").textContent = `Delete all (${page.total})`;
  $("failed-replay-all").disabled = page.total === 0;
  $("failed-delete-all").disabled = page.total === 0 || !worker;
  $("failed-delete-all").title = worker ? "" : "choose a worker first";
}

async function bulk(verb) {
  const worker = $("failed-worker").value;
  const scope = worker ? ` of worker ${worker}` : " of every worker";
  const question = verb === "replay"
    ? `Replay ${failedTotal} parked message${failedTotal === 1 ? "" : "s"}${scope}?`
    : `Delete ${failedTotal} parked message${failedTotal === 1 ? "" : "s"}${scope} for good?`;
  if (!(await confirmAction(question, verb === "replay" ? "Replay" : "Delete"))) return;
  const query = worker ? "?worker=" + enc(worker) : "";
  act(verb + " all" + (worker ? " " + worker : ""), async () =>
    counts(await api(verb === "replay" ? "POST" : "DELETE", "/api/failed" + (verb === "replay" ? "/replay" : "") + query)));
}

// ---- routing and refresh ------------------------------------------------------------------

let refreshing = Promise.resolve();

/// One refresh of the page shown; refreshes run one after the other, never side by side.
function refresh() {
  refreshing = refreshing.then(async () => {
    try {
      if (route.view === "overview") await showOverview();
      if (route.view === "executions") await showExecutions(false);
      if (route.view === "execution") await showExecution(route.param);
      if (route.view === "workers") await showWorkers();
      if (route.view === "jobs") await showJobs();
      if (route.view === "failed") await showFailed();
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      $("status").classList.remove("failed");
    } catch (e) {
      $("status").textContent = "cannot reach dpsd: " + e.message;
      $("status").classList.add("failed");
    }
  });
  return refreshing;
}

function select() {
  const [name, ...rest] = location.hash.slice(1).split("/");
  route.view = VIEWS.includes(name) ? name : "overview";
  route.param = decodeURIComponent(rest.join("/"));
  if (route.view === "failed" && route.param) {
    const choice = $("failed-worker");
    if (![...choice.options].some((o) => o.value === route.param)) choice.add(new Option(route.param, route.param));
    choice.value = route.param;
  }
  if (route.view === "execution") openResults.clear();
  $("workers-cards").dataset.scrolled = "";
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === route.view));
  document.querySelectorAll("nav a").forEach((a) => {
    const current = a.dataset.view === route.view || (route.view === "execution" && a.dataset.view === "executions");
    a.classList.toggle("active", current);
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  document.title = "dpsd: " + route.view + (route.param ? " " + route.param : "");
  refresh();
}

let timer = null;
function schedule() {
  clearTimeout(timer);
  if (!document.hidden) timer = setTimeout(() => refresh().then(schedule), REFRESH_MS);
}

window.addEventListener("hashchange", select);
document.addEventListener("visibilitychange", () => (document.hidden ? clearTimeout(timer) : refresh().then(schedule)));
$("job-preview").addEventListener("click", () => showPreview(true));
$("job-close").addEventListener("click", () => {
  $("job-panel").hidden = true;
  panelJob = null;
});
$("job-panel").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = panelJob;
  const body = { interval: $("job-schedule").value.trim(), timezone: $("job-timezone").value.trim() };
  act("schedule " + name, async () => {
    await api("POST", "/api/job/schedule/" + enc(name), body);
    await showPreview(false);
  });
});
$("failed-worker").addEventListener("change", refresh);
$("failed-replay-all").addEventListener("click", () => bulk("replay"));
$("failed-delete-all").addEventListener("click", () => bulk("delete"));
const refilter = () => {
  executionPages.extra = 0;
  refresh();
};
$("execution-filters").addEventListener("change", refilter);
$("execution-filters").addEventListener("reset", () => setTimeout(refilter));
$("execution-filters").addEventListener("submit", (event) => event.preventDefault());
$("executions-more").addEventListener("click", () => loadOlder().catch((e) => ($("executions-note").textContent = e.message)));
$("execution-search").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = "#execution/" + enc($("execution-id").value.trim());
});
$("history-minutes").addEventListener("change", refresh);
select();
schedule();
