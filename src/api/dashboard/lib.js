// The dpsd dashboard: plain JavaScript over the JSON API, one page per hash route, refreshed
// every few seconds while the tab is visible. The browser sends the API's Basic credentials
// itself (same origin). Charts are uPlot (vendor/, MIT licence). This file: the helpers every
// page uses (elements, API calls, refreshes that keep the focus, the confirmation dialog) and
// the data pages share (history, the worker choices). No build step: index.html loads
// lib.js, activity.js, operate.js and app.js in that order, sharing one global scope.
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
const counts = (answer) => Object.entries(answer).filter(([, v]) => typeof v === "number").map(([k, v]) => k + " " + v).join(", ");

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

/// `/api/history` as `{worker: [{t (epoch seconds), processed, failed, retried, parked,
/// depth, p50, p90, p99 (ms)}]}` with the counts of each interval, and the interval; or an
/// error: a page that cannot have it says so instead of drawing anything.
async function history(minutes) {
  const fresh = Date.now() - historyCache.at < HISTORY_MAX_AGE_MS && historyCache.minutes >= minutes;
  if (!fresh) {
    try {
      const doc = await api("GET", "/api/history?minutes=" + minutes);
      historyCache = { at: Date.now(), minutes, data: byWorker(doc), interval: doc.intervalSeconds, error: null };
    } catch (e) {
      historyCache = { at: Date.now(), minutes, data: null, error: e.message };
    }
  }
  return historyCache;
}

/// The history document's `workers: [{worker, points}]` by name, each point's time in
/// seconds (uPlot's unit) and its service times in milliseconds.
function byWorker(doc) {
  const ms = (s) => (s === null || s === undefined ? null : s * 1000);
  const named = {};
  for (const { worker, points } of doc.workers) {
    named[worker] = points.map((p) => {
      const service = p.serviceSeconds || {};
      return {
        t: Date.parse(p.at) / 1000, processed: p.processed, failed: p.failed, retried: p.retried, parked: p.parked,
        depth: p.queueDepth, p50: ms(service.p50), p90: ms(service.p90), p99: ms(service.p99),
      };
    });
  }
  return named;
}

/// Per-second rates of a count over each point's interval.
const rates = (points, field, interval) => points.map((p) => (p[field] ?? 0) / interval);

/// A count added up over the points.
const total = (points, field) => points.reduce((n, p) => n + (p[field] ?? 0), 0);

function fillWorkerChoices(workers) {
  for (const select of document.querySelectorAll(".worker-choice")) {
    for (const worker of workers) {
      if (![...select.options].some((o) => o.value === worker.name)) select.add(new Option(worker.name, worker.name));
    }
  }
}

const needsAttention = (w) => w.replicasRunning !== w.replicasWanted || w.paused === true || !!w.configError;

