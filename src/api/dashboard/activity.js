// The dpsd dashboard's pages about what happened: the overview, the executions list and one
// execution's timeline. (Plain scripts sharing one global scope, loaded in order by
// index.html: lib.js, activity.js, operate.js, app.js; no build step.)
"use strict";

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
    rate = (recent.reduce((n, points) => n + total(points, "processed"), 0) / 60).toFixed(1);
    failedHour = Object.values(hist.data).reduce((n, points) => n + total(points, "failed"), 0);
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

