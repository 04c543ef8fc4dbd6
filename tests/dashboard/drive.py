"""Drives the dashboard in headless Chromium for tests/dashboard.rs.

usage: drive.py BASE_URL STEP [ARGS...] [+ STEP [ARGS...]]...
Steps joined by "+" run in one browser, one after the other (each launch costs seconds).
  jobs NAME...            the jobs table lists every NAME
  run JOB                 clicks "Run now" on JOB's row
  pause JOB, resume JOB   clicks "Pause" (or "Resume") on JOB's row; its status says paused (or not)
  preview JOB SCHED ZONE TEXT  opens JOB's panel, previews SCHED in ZONE (a fire time shows
                          TEXT), then re-schedules it and the row shows "SCHED (ZONE)"
  replay ID               clicks "Replay" on parked message ID and waits until it is gone
  replicas WORKER N       waits until WORKER's card shows N of N replicas
  overview                the overview's figures equal what the API reports (workers' counters,
                          failed attempts of the last hour in /api/history, parked total,
                          workers needing attention, jobs that failed last, RabbitMQ and
                          store), and each figure links to its page
  filters STATUS WORKER   the executions list equals the API's unfiltered, with status=STATUS,
                          and with worker=WORKER, and each filter narrows it
  timeline ID             the execution's page shows one stage per stage of the API's document,
                          each with its worker and status, and a stage's result on demand
  worker-pause W, worker-resume W  clicks Pause (Resume) on W's card; the API then says paused
                          (not paused) and the card's button turns to Resume (Pause)
  charts W                W's card draws its three charts from /api/history (canvases, no
                          "history unavailable")
  cancel ID               cancels execution ID from its page (confirmed); the API says cancelled
  replay-execution ID     replays parked execution ID from its page; the API no longer has it parked
  bulk VERB WORKER N      VERB (replay or delete) all of WORKER's parked messages from the failed
                          page: the confirmation names N; after it the API has none of WORKER's
  axe VIEW...             axe-core finds no serious or critical violation on each VIEW (a hash
                          route), at desktop and phone widths
  screenshot VIEW PATH    a 1280x800 screenshot of VIEW (and PATH-phone.png at 390x844),
                          at most 2.5 screens high
Prints "ok" and exits 0 when every step did what it says; anything else is a failure.
"""
import json
import os
import sys
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000
AXE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor", "axe.min.js")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class Driver:
    def __init__(self, base, browser):
        self.base = base
        self.browser = browser
        self.page = self.new_page(DESKTOP)

    def new_page(self, viewport):
        page = self.browser.new_page(viewport=viewport)
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        return page

    def api(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.load(response)

    def open(self, route, page=None):
        """Opens a hash route and waits for its first refresh."""
        page = page or self.page
        page.goto(self.base + "/dashboard/#" + route)
        expect(page.locator("#status")).to_contain_text("updated")
        if page.errors:
            raise SystemExit(f"script errors on #{route}: {page.errors}")
        return page

    def notice(self, text):
        expect(self.page.locator("#notice")).to_have_text(text)

    def confirm(self, names):
        dialog = self.page.locator("#confirm")
        expect(dialog).to_be_visible()
        expect(dialog.locator("#confirm-text")).to_contain_text(names)
        dialog.locator("#confirm-ok").click()

    # ---- the original steps --------------------------------------------------------------

    def jobs(self, *names):
        self.open("jobs")
        for name in names:
            expect(self.page.locator(f'tr[data-job="{name}"]')).to_be_visible()

    def run(self, job):
        self.open("jobs")
        self.page.locator(f'tr[data-job="{job}"] button', has_text="Run now").click()
        self.notice(f"run {job}: ok")

    def job_toggle(self, verb, job):
        self.open("jobs")
        row = self.page.locator(f'tr[data-job="{job}"]')
        row.locator("button", has_text=verb.capitalize()).click()
        self.notice(f"{verb} {job}: ok")
        status = row.locator('td[data-fact="status"]')
        if verb == "pause":
            expect(status).to_contain_text("paused")
        else:
            expect(status).not_to_contain_text("paused")

    def preview(self, job, schedule, zone, shown):
        self.open("jobs")
        self.page.locator(f'tr[data-job="{job}"] button', has_text="Next runs").click()
        expect(self.page.locator("#job-times tr")).to_have_count(5)
        self.page.fill("#job-schedule", schedule)
        self.page.fill("#job-timezone", zone)
        self.page.click("#job-preview")
        expect(self.page.locator("#job-preview-note")).to_contain_text("not applied")
        expect(self.page.locator("#job-times")).to_contain_text(shown)
        self.page.click("#job-apply")
        self.notice(f"schedule {job}: ok")
        expect(self.page.locator(f'tr[data-job="{job}"]')).to_contain_text(f"{schedule} ({zone})")

    def replay(self, parked_id):
        self.open("failed")
        row = self.page.locator(f'tr[data-id="{parked_id}"]')
        row.locator("button", has_text="Replay").click()
        self.notice(f"replay {parked_id}: ok")
        expect(row).to_have_count(0)

    def replicas(self, worker, n):
        self.open("workers")
        fact = self.page.locator(f'[data-worker="{worker}"] dd[data-fact="replicas"]')
        expect(fact).to_have_text(f"{n} / {n}")

    # ---- the pages of issue 21 -----------------------------------------------------------

    def overview(self):
        page = self.open("overview")
        workers = self.api("/api/workers")
        jobs = self.api("/api/jobs")
        wanted = {
            "processed": sum(w["counters"]["processed"] for w in workers),
            "failed": sum(w["counters"]["failed"] for w in workers),
            "parked": self.api("/api/failed?limit=1")["total"],
            "workers": len(workers),
            "attention": sum(1 for w in workers if w["replicasRunning"] != w["replicasWanted"]
                             or w["paused"] or w["configError"]),
            "jobs": len(jobs),
            "jobs-failed": sum(1 for j in jobs if j["lastStatus"] == "failed"),
            "failed-hour": sum(p["failed"] for w in self.api("/api/history?minutes=60")["workers"]
                               for p in w["points"]),
        }
        for fact, value in wanted.items():
            expect(page.locator(f'[data-fact="{fact}"] .value')).to_have_text(str(value))
        for fact, href in [("parked", "#failed"), ("jobs-failed", "#jobs"), ("processed", "#workers")]:
            expect(page.locator(f'a[data-fact="{fact}"]')).to_have_attribute("href", href)
        for j in jobs:
            if j["lastStatus"] == "failed":
                link = page.locator("#attention-jobs a", has_text=j["name"])
                expect(link).to_have_attribute("href", "#jobs/" + urllib.parse.quote(j["name"]))
        expect(page.locator('#backing [data-fact="rabbitmq"] .badge')).to_have_text("ok")
        expect(page.locator('#backing [data-fact="store"] .badge')).to_have_text("ok")

    def expect_list(self, query):
        wanted = [e["executionId"] for e in self.api("/api/executions?limit=50" + query)["items"]]
        rows = self.page.locator("#executions-rows tr")
        expect(rows).to_have_count(len(wanted))
        for i, execution_id in enumerate(wanted):
            expect(rows.nth(i)).to_have_attribute("data-execution", execution_id)
        return wanted

    def filters(self, status, worker):
        self.open("executions")
        everything = self.expect_list("")
        self.page.select_option("#filter-status", status)
        by_status = self.expect_list("&status=" + status)
        self.page.click("#filter-clear")
        self.expect_list("")
        self.page.select_option("#filter-worker", worker)
        by_worker = self.expect_list("&worker=" + urllib.parse.quote(worker))
        for narrowed in (by_status, by_worker):
            if not (0 < len(narrowed) < len(everything)):
                raise SystemExit(f"a filter did not narrow the list: {len(narrowed)} of {len(everything)}")
        self.page.select_option("#filter-status", status)
        both = self.expect_list("&status=" + status + "&worker=" + urllib.parse.quote(worker))
        if not set(both) <= set(by_worker):
            raise SystemExit("status and worker together widened the list")

    def timeline(self, execution_id):
        document = self.api("/api/executions/" + urllib.parse.quote(execution_id, safe=""))
        page = self.open("execution/" + urllib.parse.quote(execution_id, safe=""))
        stages = page.locator("#execution-timeline li.stage")
        expect(stages).to_have_count(len(document["stages"]))
        for i, stage in enumerate(document["stages"]):
            item = stages.nth(i)
            expect(item).to_have_attribute("data-worker", stage["worker"])
            expect(item.locator(".badge")).to_have_text(stage["status"])
            if stage.get("result") is not None:
                item.locator("button", has_text="Show result").click()
                expect(item.locator("pre")).to_be_visible()
                expect(item.locator("pre")).to_contain_text(json.dumps(stage["result"])[:20].strip('"'))
        expect(page.locator('#execution-summary [data-fact="status"]')).to_have_text(document["status"])

    def worker_toggle(self, verb, worker):
        page = self.open("workers")
        toggle = page.locator(f'[data-worker="{worker}"] .card-head button')
        expect(toggle).to_have_text(verb.capitalize())
        toggle.click()
        self.notice(f"{verb} {worker}: ok")
        paused = next(w["paused"] for w in self.api("/api/workers") if w["name"] == worker)
        if paused != (verb == "pause"):
            raise SystemExit(f"the API says paused={paused} after {verb}")
        expect(toggle).to_have_text("Resume" if verb == "pause" else "Pause")

    def charts(self, worker):
        page = self.open("workers")
        card = page.locator(f'[data-worker="{worker}"]')
        expect(card.locator("figure canvas")).to_have_count(3)
        expect(card).not_to_contain_text("history unavailable")

    def cancel(self, execution_id):
        page = self.open("execution/" + urllib.parse.quote(execution_id, safe=""))
        page.locator("#execution-actions button", has_text="Cancel execution").click()
        self.confirm(execution_id)
        self.notice(f"cancel {execution_id}: ok")
        status = self.api("/api/executions/" + urllib.parse.quote(execution_id, safe=""))["status"]
        if status != "cancelled":
            raise SystemExit(f"the API says {status} after the cancel")
        expect(page.locator('#execution-summary [data-fact="status"]')).to_have_text("cancelled")

    def replay_execution(self, execution_id):
        document = self.api("/api/executions/" + urllib.parse.quote(execution_id, safe=""))
        parked_id = f'{document["worker"]}:{execution_id}'
        page = self.open("execution/" + urllib.parse.quote(execution_id, safe=""))
        page.locator("#execution-actions button", has_text="Replay").click()
        self.notice(f"replay {parked_id}: ok")
        left = self.api("/api/failed?limit=1000&worker=" + urllib.parse.quote(document["worker"]))
        if any(item["id"] == parked_id for item in left["items"]):
            raise SystemExit(f"{parked_id} is still parked after the replay")

    def bulk(self, verb, worker, n):
        page = self.open("failed/" + urllib.parse.quote(worker))
        expect(page.locator("#failed-rows tr")).to_have_count(int(n))
        page.locator(f"#failed-{verb}-all").click()
        plural = "message" if n == "1" else "messages"
        self.confirm(f"{n} parked {plural} of worker {worker}")
        counted = "replayed" if verb == "replay" else "deleted"
        expect(page.locator("#notice")).to_contain_text(f"{verb} all {worker}: ")
        expect(page.locator("#notice")).to_contain_text(f"{counted} {n}")
        total = self.api("/api/failed?limit=1&worker=" + urllib.parse.quote(worker))["total"]
        if total != 0:
            raise SystemExit(f"{total} of {worker}'s messages still parked after {verb} all")
        expect(page.locator("#failed-rows tr")).to_have_count(0)

    def axe(self, *views):
        for viewport in (DESKTOP, PHONE):
            page = self.new_page(viewport)
            for view in views:
                self.open(view, page)
                page.add_script_tag(path=AXE)
                result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
                bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
                if bad:
                    found = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5]) for v in bad]
                    raise SystemExit(f"axe on #{view} at {viewport['width']} px: {found}")
            page.close()

    def screenshot(self, view, path):
        page = self.open(view)
        page.wait_for_timeout(3500)  # a refresh or two, so the charts are drawn at their width
        page.screenshot(path=path, full_page=True, clip=screen_clip(page, DESKTOP))
        phone = self.new_page(PHONE)
        self.open(view, phone)
        phone.wait_for_timeout(2500)
        phone.screenshot(path=path.replace(".png", "-phone.png"), full_page=True,
                         clip=screen_clip(phone, PHONE))
        phone.close()


def screen_clip(page, viewport):
    """The whole page, but at most 2.5 screens high: a long list says what it is in its
    first screens, and the full length made PNGs of a megabyte for docs/."""
    height = page.evaluate("document.documentElement.scrollHeight")
    return {"x": 0, "y": 0, "width": viewport["width"],
            "height": min(height, int(viewport["height"] * 2.5))}


STEPS = {
    "jobs": Driver.jobs, "run": Driver.run, "preview": Driver.preview, "replay": Driver.replay,
    "replicas": Driver.replicas, "overview": Driver.overview, "filters": Driver.filters,
    "timeline": Driver.timeline, "charts": Driver.charts, "cancel": Driver.cancel,
    "replay-execution": Driver.replay_execution, "bulk": Driver.bulk, "axe": Driver.axe,
    "screenshot": Driver.screenshot,
    "pause": lambda d, job: d.job_toggle("pause", job),
    "resume": lambda d, job: d.job_toggle("resume", job),
    "worker-pause": lambda d, w: d.worker_toggle("pause", w),
    "worker-resume": lambda d, w: d.worker_toggle("resume", w),
}


def split(args):
    steps, current = [], []
    for arg in args:
        if arg == "+":
            steps.append(current)
            current = []
        else:
            current.append(arg)
    steps.append(current)
    return [s for s in steps if s]


def main(base, args):
    steps = split(args)
    for step in steps:
        if step[0] not in STEPS:
            raise SystemExit(f"unknown step {step[0]}")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
        driver = Driver(base, browser)
        for name, *step_args in steps:
            print("step", name, *step_args, flush=True)
            STEPS[name](driver, *step_args)
        browser.close()
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
