// The dpsd dashboard's pages one acts from: workers (cards and uPlot charts), jobs and failed
// messages. (Plain scripts sharing one global scope, loaded in order by index.html: lib.js,
// activity.js, operate.js, app.js; no build step.)
"use strict";

// ---- workers ------------------------------------------------------------------------------

const cards = {}; // worker -> {root, facts, toggle, charts: {name: uPlot}}
const CHARTS = [
  ["throughput", "Throughput (messages/s)", [["processed/s", "#2457c5"], ["failed/s", "#b3261e"]]],
  ["depth", "Queue depth (messages ready)", [["ready", "#6b4bb8"]]],
  ["service", "Service time (ms)", [["p50", "#1f7a4d"], ["p90", "#a15c00"]]],
];

function chartData(name, points, interval) {
  const xs = points.map((p) => p.t);
  if (name === "throughput") return [xs, rates(points, "processed", interval), rates(points, "failed", interval)];
  if (name === "depth") return [xs, points.map((p) => p.depth ?? null)];
  return [xs, points.map((p) => p.p50), points.map((p) => p.p90)];
}

function makeChart(holder, series) {
  const axis = { stroke: "#3d4654", grid: { stroke: "#e3e6eb" }, ticks: { stroke: "#c9ced6" } };
  return new uPlot({
    width: Math.max(200, holder.clientWidth), height: 120,
    // The legend names the series; live values under the cursor only showed "--" placeholders.
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
    // Every series is a count or a duration: from 0, and 0 to 1 while all are 0.
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
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

function updateCharts(card, points, interval) {
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
    const data = chartData(name, points, interval);
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
    updateCharts(card, points, hist.interval);
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

