#!/usr/bin/env python3
"""Runs N messages through the two-stage example chain (builtin services) with the release
binary and prints: messages per second through both stages, the share of handling time spent
writing job state, and each replica's peak resident memory.

Why: the figures the worker issue asks for, reproducible. `make bench` (a later issue) grows
out of this. Usage: chain-figures.py [N] [mongodb|embedded]. For mongodb it needs the servers of
`scripts/test-services.sh` (run it through that script).
"""
import json, os, subprocess, sys, tempfile, time, uuid

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
STORE = sys.argv[2] if len(sys.argv) > 2 else "mongodb"  # or "embedded"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DPSD = os.path.join(ROOT, "target", "release", "dpsd")
AMQP = os.environ.get("DPSD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
MONGO = os.environ.get("DPSD_TEST_MONGODB_URI") if STORE == "mongodb" else None

run_id = uuid.uuid4().hex[:8]
work = tempfile.mkdtemp(prefix="dpsd-figures-")
q1, q2 = f"figures_{run_id}.stage1", f"figures_{run_id}.stage2"
os.makedirs(f"{work}/workers.d")
with open(f"{work}/dpsd.yaml", "w") as f:
    f.write(f"""amqp: {{url: "{AMQP}", prefetch: 50}}
{f'mongodb: {{uri: "{MONGO}", database: figures_{run_id}}}' if MONGO else "state_dir: state"}
log: {{level: info, format: json}}
workers_dir: workers.d
services:
  s1: {{builtin: constant, value: test1}}
  s2: {{builtin: constant, value: test2_0}}
  s2_1: {{builtin: constant, value: test2_1}}
""")
with open(f"{work}/workers.d/w1.yaml", "w") as f:
    f.write(f"queue: {q1}\nfollow_queue: {q2}\njob_state: 1\nservices: [s1]\n")
with open(f"{work}/workers.d/w2.yaml", "w") as f:
    f.write(f"queue: {q2}\njob_state: 2\nservices: [s2, s2_1]\n")

def dpsd(*args, **kw):
    return subprocess.Popen([DPSD, "--config", f"{work}/dpsd.yaml", *args], **kw)

def done_lines(name):
    try:
        with open(f"{work}/{name}.log") as f:
            return [json.loads(l) for l in f if '"done"' in l]
    except FileNotFoundError:
        return []

def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

workers = {name: dpsd("worker", name, stderr=open(f"{work}/{name}.log", "w")) for name in ("w1", "w2")}
deadline = time.time() + 30
while not all("consuming" in open(f"{work}/{n}.log").read() for n in workers):
    assert time.time() < deadline, "workers did not start"
    time.sleep(0.1)
idle = {n: peak_rss_kb(p.pid) for n, p in workers.items()}

start = time.time()
sender = dpsd("send", q1, '{"mydata": {}}', "--count", str(N), stdout=subprocess.DEVNULL)
sender.wait()
published = time.time()
deadline = time.time() + 600
while len(done_lines("w2")) < N:
    assert time.time() < deadline, f"only {len(done_lines('w2'))} of {N} done"
    time.sleep(0.2)
end = time.time()
peak = {n: peak_rss_kb(p.pid) for n, p in workers.items()}
for p in workers.values():
    p.terminate()
    p.wait()

store = sum(int(l["store_ms"]) for n in workers for l in done_lines(n))
total = sum(int(l["elapsed_ms"]) for n in workers for l in done_lines(n))
print(f"store:                      {STORE}")
print(f"messages:                   {N}")
print(f"publish (dpsd send --count): {N / (published - start):.0f} msg/s")
print(f"through both stages:        {N / (end - start):.0f} msg/s ({end - start:.1f} s)")
print(f"state writes:               {100 * store / max(total, 1):.0f}% of message handling time")
print(f"mean handling per stage:    {total / (2 * N):.1f} ms (state write {store / (2 * N):.1f} ms)")
for n in workers:
    print(f"replica {n} resident:       idle {idle[n] / 1024:.1f} MB, peak {peak[n] / 1024:.1f} MB")
subprocess.run(["rm", "-rf", work])
for queue in (q1, q2):
    subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
