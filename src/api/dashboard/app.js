// The dpsd dashboard's routing by hash and its refresh loop, which runs while the tab is
// visible. Loaded last (after lib.js, activity.js and operate.js), it starts the page.
"use strict";

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

