"""Drives the dashboard in headless Chromium for tests/dashboard.rs, one step per call.

usage: drive.py BASE_URL STEP [ARGS...]
  jobs NAME...            the jobs table lists every NAME
  run JOB                 clicks "Run now" on JOB's row
  pause JOB, resume JOB   clicks "Pause" (or "Resume") on JOB's row; its status says paused (or not)
  preview JOB SCHED ZONE TEXT  opens JOB's panel, previews SCHED in ZONE (a fire time shows
                          TEXT), then re-schedules it and the row shows "SCHED (ZONE)"
  replay ID               clicks "Replay" on parked message ID and waits until it is gone
  replicas WORKER N       waits until WORKER's card shows N of N replicas
  screenshot VIEW PATH    a 1280x800 screenshot of VIEW (and PATH-phone.png at 390x844)
Prints "ok" and exits 0 when the step did what it says; anything else is a failure.
"""
import sys

from playwright.sync_api import expect, sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000


def main(base, step, args):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        if step == "jobs":
            page.goto(base + "/dashboard/#jobs")
            for name in args:
                expect(page.locator(f'tr[data-job="{name}"]')).to_be_visible()
        elif step == "run":
            page.goto(base + "/dashboard/#jobs")
            page.locator(f'tr[data-job="{args[0]}"] button', has_text="Run now").click()
            expect(page.locator("#notice")).to_have_text(f"run {args[0]}: ok")
        elif step in ("pause", "resume"):
            page.goto(base + "/dashboard/#jobs")
            row = page.locator(f'tr[data-job="{args[0]}"]')
            row.locator("button", has_text=step.capitalize()).click()
            expect(page.locator("#notice")).to_have_text(f"{step} {args[0]}: ok")
            status = row.locator('td[data-fact="status"]')
            if step == "pause":
                expect(status).to_contain_text("paused")
            else:
                expect(status).not_to_contain_text("paused")
        elif step == "preview":
            job, schedule, zone, shown = args
            page.goto(base + "/dashboard/#jobs")
            page.locator(f'tr[data-job="{job}"] button', has_text="Next runs").click()
            expect(page.locator("#job-times tr")).to_have_count(5)
            page.fill("#job-schedule", schedule)
            page.fill("#job-timezone", zone)
            page.click("#job-preview")
            expect(page.locator("#job-preview-note")).to_contain_text("not applied")
            expect(page.locator("#job-times")).to_contain_text(shown)
            page.click("#job-apply")
            expect(page.locator("#notice")).to_have_text(f"schedule {job}: ok")
            expect(page.locator(f'tr[data-job="{job}"]')).to_contain_text(f"{schedule} ({zone})")
        elif step == "replay":
            page.goto(base + "/dashboard/#failed")
            row = page.locator(f'tr[data-id="{args[0]}"]')
            row.locator("button", has_text="Replay").click()
            expect(page.locator("#notice")).to_have_text(f"replay {args[0]}: ok")
            expect(row).to_have_count(0)
        elif step == "replicas":
            page.goto(base + "/dashboard/#workers")
            fact = page.locator(f'div[data-worker="{args[0]}"] dd[data-fact="replicas"]')
            expect(fact).to_have_text(f"{args[1]} / {args[1]}")
        elif step == "screenshot":
            page.goto(base + f"/dashboard/#{args[0]}")
            page.wait_for_timeout(4500)  # a few refreshes, so the charts have points
            page.screenshot(path=args[1], full_page=True)
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(base + f"/dashboard/#{args[0]}")
            phone.wait_for_timeout(2500)
            phone.screenshot(path=args[1].replace(".png", "-phone.png"), full_page=True)
        else:
            raise SystemExit(f"unknown step {step}")
        browser.close()
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
