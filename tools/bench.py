#!/usr/bin/env python3
"""`make bench`: the two-stage chain against a bare amqprs relay doing the same broker work,
all in one run on the local RabbitMQ, and the figures written to docs/BENCHMARKS.md.

  1. the limit: examples/relay.rs (publish N, relay with confirms, ack) -> messages/s;
  2. dpsd: the same N through the example chain (builtin constant services, job state
     written) under `dpsd run`, on the embedded store and (when DPSD_TEST_MONGODB_URI is
     set, as scripts/test-services.sh does) on the MongoDB-wire server, replicas 1 and 2;
  3. the embedded store alone (examples/store_bench.rs): stage writes per second with P in
     flight, one process, then two sharing the file as the chain's two workers do;
  4. the chain on quorum queues (replicated queues; one node here), replicas 1 and 2: what
     they cost the broker against the classic runs;
  5. retention: the chain with pruning running beside it, and with the embedded store already
     holding PREFILL executions, each beside a plain run;
  6. paced: RATE msg/s for SECONDS on the embedded store: end-to-end latency from publish
     to the final state written (p50, p99, max), for the baseline too with --compare;
  7. overlap: the record and the forward side by side, from the `done` log lines, per store;
  8. celery: the same chain as two Celery 5.7 tasks (tools/celery_chain.py, the setting the
     issue names), Celery installed by scripts/celery-venv.sh, on the same broker.
  9. list: GET /api/executions on an embedded store holding PREFILL executions (first and
     next page of 50, plain and by status, worker, both, time), and the chain's throughput
     with the list's indexes against the same build without them (alternating pairs).
For each dpsd run: messages/s, the fraction of the relay, CPU seconds of dpsd and of the
broker per 10,000 messages, and the peak resident memory of a replica.

With --compare BINARY, the embedded runs are repeated with another build of dpsd (an older
commit, say), alternating with this one, so a change is measured against its baseline in
one session on a noisy machine.

usage: bench.py [--n N] [--prefetch P] [--rate R] [--seconds S] [--prefill N] [--compare BINARY] [--only GROUPS] [--out FILE]
"""
import argparse, calendar, json, os, sqlite3, statistics, subprocess, tempfile, time, urllib.request, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def release_build(name):
    """Where cargo put the release build of `name` (scripts/binary-path.sh asks cargo, so
    CARGO_TARGET_DIR and a cargo config's target-dir are honoured)."""
    script = os.path.join(ROOT, "scripts", "binary-path.sh")
    return subprocess.run([script, "release", name], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()


DPSD = release_build("dpsd")
RELAY = release_build("examples/relay")
STORE_BENCH = release_build("examples/store_bench")
AMQP = os.environ.get("DPSD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
MONGO = os.environ.get("DPSD_TEST_MONGODB_URI")
TICK = os.sysconf("SC_CLK_TCK")


def iso_seconds(stamp):
    """Unix seconds of the store's "2026-11-29T04:42:01.123Z" timestamps."""
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + int(stamp[20:23]) / 1000


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, IndexError):
            pass
    return total / TICK


def children(pid):
    """Child processes of `pid`, whichever of its threads started them."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass
    return found


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def broker_pids():
    out = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def uuid7(t):
    """The id dpsd assigns an execution made at `t` (seconds since the epoch): a UUID v7, its
    milliseconds first and random bits after, so that a filled store's id index is laid out
    as one dpsd wrote."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = int(t * 1000) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64 | 0b10 << 62 | rand & (1 << 62) - 1
    return str(uuid.UUID(int=value))


class Chain:
    """A scratch configuration with the example chain, run by `dpsd run`."""

    def __init__(self, store, replicas, prefetch, dpsd=DPSD, queue_type="classic", retention=None, prefill=0,
                 log="{level: warn}", list_indexes=True):
        self.dpsd, self.queue_type, self.retention, self.prefill = dpsd, queue_type, retention, prefill
        # Without them (src/store/embedded/list.rs), for the list group's comparison only.
        self.list_indexes = list_indexes
        self.id = uuid.uuid4().hex[:8]
        self.dir = tempfile.mkdtemp(prefix="dpsd-bench-")
        self.q1, self.q2 = f"bench_{self.id}.stage1", f"bench_{self.id}.stage2"
        self.replicas, self.store, self.daemon = replicas, store, None
        self.port = free_port()
        os.makedirs(f"{self.dir}/workers.d")
        os.makedirs(f"{self.dir}/jobs.d")
        store_yaml = f'mongodb: {{uri: "{MONGO}", database: bench_{self.id}}}' if store == "mongodb" else "state_dir: state"
        with open(f"{self.dir}/dpsd.yaml", "w") as f:
            # queue_type only when it is not the default: a baseline build may predate it.
            queues = "" if queue_type == "classic" else f", queue_type: {queue_type}"
            f.write(f"""amqp: {{url: "{AMQP}", prefetch: {prefetch}{queues}}}
{store_yaml}
api: {{listen: "127.0.0.1:{self.port}"}}
log: {log}
workers_dir: workers.d
{f"retention: {{executions: {retention}}}" if retention else ""}
services:
  s1: {{builtin: constant, value: test1}}
  s2: {{builtin: constant, value: test2_0}}
  s2_1: {{builtin: constant, value: test2_1}}
""")
        with open(f"{self.dir}/workers.d/w1.yaml", "w") as f:
            f.write(f"queue: {self.q1}\nfollow_queue: {self.q2}\njob_state: 1\nreplicas: {replicas}\nservices: [s1]\n")
        with open(f"{self.dir}/workers.d/w2.yaml", "w") as f:
            f.write(f"queue: {self.q2}\njob_state: 2\nreplicas: {replicas}\nservices: [s2, s2_1]\n")

    def start(self):
        if self.prefill:
            self.launch()
            self.stop_daemon()
            self.fill(self.prefill)
        self.launch()

    def fill(self, n):
        """Adds `n` finished executions (updated an hour ago, kept by the default retention)
        to the embedded store, as a store that has run for a while holds them."""
        db = sqlite3.connect(f"{self.dir}/state/dpsd.sqlite")
        then = time.time() - 3600
        at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(then))
        rows = ((uuid7(then + i * 0.0002), at, at) for i in range(n))
        db.executemany("INSERT INTO job_state (execution_id, state, status, worker, attempts, created_at, updated_at) "
                       "VALUES (?, 2, 'done', 'w2', 1, ?, ?)", rows)
        db.commit()
        db.close()

    def launch(self):
        env = dict(os.environ)
        if not self.list_indexes:
            env["DPSD_BENCH_WITHOUT_LIST_INDEXES"] = "1"
        self.daemon = subprocess.Popen([self.dpsd, "--config", f"{self.dir}/dpsd.yaml", "run"], stderr=open(f"{self.dir}/log", "w"),
                                       env=env)
        deadline = time.time() + 60
        while self.consumers() < 2 * self.replicas:
            if self.daemon.poll() is not None or time.time() > deadline:
                with open(f"{self.dir}/log") as log:
                    raise AssertionError(f"the chain did not start; its log ends:\n{log.read()[-2000:]}")
            time.sleep(0.2)

    def api(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.load(r)

    def consumers(self):
        try:
            return sum((w.get("queueStats") or {}).get("consumers", 0) for w in self.api("/api/workers"))
        except OSError:
            return 0

    def processed(self):
        workers = {w["name"]: w for w in self.api("/api/workers")}
        return workers["w2"]["counters"]["processed"] if "w2" in workers else 0

    def send(self, n):
        """Publishes n example messages to the first stage with `dpsd send --count`."""
        subprocess.run([DPSD, "--config", f"{self.dir}/dpsd.yaml", "send", self.q1, '{"mydata": {}}', "--count", str(n)],
                       stdout=subprocess.DEVNULL, check=True)

    def wait_processed(self, n, seconds, poll=0.2):
        """Waits until the last stage has processed n messages, at most `seconds`."""
        deadline = time.time() + seconds
        while self.processed() < n:
            assert time.time() < deadline, f"{n} messages not through the chain in {seconds} s: {self.dir}/log"
            time.sleep(poll)

    def last_final_state(self):
        """When the last message's final state was written (Unix seconds), read from the store:
        the workers' reports to the daemon come once a second, too coarse to time a run by."""
        if self.store == "mongodb":
            import pymongo
            with pymongo.MongoClient(MONGO) as client:
                last = client[f"bench_{self.id}"]["job_state"].find_one({"state": 2}, sort=[("updatedAt", -1)])
            return last["updatedAt"].replace(tzinfo=__import__("datetime").timezone.utc).timestamp()
        db = sqlite3.connect(f"{self.dir}/state/dpsd.sqlite")
        (updated,) = db.execute("SELECT max(updated_at) FROM job_state WHERE state = 2").fetchone()
        db.close()
        return iso_seconds(updated)

    def stop_daemon(self):
        if self.daemon:
            self.daemon.terminate()
            self.daemon.wait(timeout=60)
            self.daemon = None

    def stop(self):
        self.stop_daemon()
        for queue in (self.q1, self.q2):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", self.dir])


def throughput(store, replicas, n, prefetch, relay_rate, dpsd=DPSD, queue_type="classic", retention=None, prefill=0,
               list_indexes=True):
    chain = Chain(store, replicas, prefetch, dpsd, queue_type, retention, prefill, list_indexes=list_indexes)
    try:
        figures = measure(chain, n, relay_rate)
        if store == "embedded":
            db = sqlite3.connect(f"{chain.dir}/state/dpsd.sqlite")
            (tables,) = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'execution_workers'").fetchone()
            db.close()
            assert tables == int(list_indexes), "DPSD_BENCH_WITHOUT_LIST_INDEXES was not obeyed"
        return figures
    finally:
        chain.stop()


def measure(chain, n, relay_rate):
    chain.start()
    pids, broker = [chain.daemon.pid] + children(chain.daemon.pid), broker_pids()
    cpu0, bcpu0 = cpu_seconds(pids), cpu_seconds(broker)
    started = time.time()
    chain.send(n)
    chain.wait_processed(n, 600, poll=0.05)
    seconds = chain.last_final_state() - started
    cpu, bcpu = cpu_seconds(pids) - cpu0, cpu_seconds(broker) - bcpu0
    rss = max(peak_rss_mb(p) for p in children(chain.daemon.pid))
    rate = n / seconds
    relay_rate = relay_rate or rate
    build = "" if chain.dpsd == DPSD else " (baseline)"
    queues = "" if chain.queue_type == "classic" else f", {chain.queue_type} queues"
    if chain.retention:
        queues += f", pruning beside it (retention {chain.retention})"
    if chain.prefill:
        queues += f", {chain.prefill:,} executions held before"
    if not chain.list_indexes:
        queues += ", without the list's indexes"
    return {
        "run": f"dpsd{build}, {chain.store}{queues}, replicas {chain.replicas}", "n": n, "per_second": rate, "of_relay": rate / relay_rate,
        "dpsd_cpu_per_10k": cpu * 10_000 / n, "broker_cpu_per_10k": bcpu * 10_000 / n, "replica_peak_mb": rss,
    }


def overlap(store, n, prefetch):
    """Issue 16: the record and the forward side by side, seen in the first stage's `done` log
    lines (store_ms, confirm_ms, and the elapsed time after the services): medians over n
    messages through the chain, logged at info in JSON (slower than a bench run: for the
    shape only)."""
    chain = Chain(store, 1, prefetch, log="{level: info, format: json}")
    try:
        chain.start()
        chain.send(n)
        chain.wait_processed(n, 300)
        done = []
        with open(f"{chain.dir}/log") as f:
            for line in f:
                # the first worker's lines: it both records and forwards (the last only records)
                if '"done"' in line and '"w1"' in line:
                    event = json.loads(line)
                    fields = event.get("fields", event)
                    done.append(fields)
    finally:
        chain.stop()
    med = lambda key: statistics.median(d[key] for d in done)
    after = statistics.median(d["elapsed_ms"] - d["services_ms"] for d in done)
    both = statistics.median(d["store_ms"] + d["confirm_ms"] for d in done)
    # What the stage waited beyond the slower of the two: 0 when they overlap fully.
    beyond = statistics.median(d["elapsed_ms"] - d["services_ms"] - max(d["store_ms"], d["confirm_ms"]) for d in done)
    return {"store": store, "stages": len(done), "store_ms": med("store_ms"), "confirm_ms": med("confirm_ms"),
            "in_series_ms": both, "after_services_ms": after, "beyond_slower_ms": beyond}


def paced(rate, seconds, prefetch, dpsd=DPSD):
    chain = Chain("embedded", 1, prefetch, dpsd)
    try:
        return measure_latency(chain, rate, seconds)
    finally:
        chain.stop()


def measure_latency(chain, rate, seconds):
    chain.start()
    subprocess.run([RELAY, AMQP, "pace", chain.q1, str(rate), str(seconds)], check=True)
    n = rate * seconds
    chain.wait_processed(n, 120)
    db = sqlite3.connect(f"{chain.dir}/state/dpsd.sqlite")
    latencies = []
    for execution_id, updated in db.execute("SELECT execution_id, updated_at FROM job_state WHERE state = 2"):
        sent_ms = int(execution_id.split("-")[1])
        latencies.append(iso_seconds(updated) * 1000 - sent_ms)
    db.close()
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    build = "this build" if chain.dpsd == DPSD else "baseline"
    return {"build": build, "rate": rate, "messages": len(latencies), "p50": pick(0.50), "p99": pick(0.99), "max": latencies[-1]}


def celery(n, relay_rate):
    """The same two-stage chain as two Celery tasks (tools/celery_chain.py), one prefork
    worker of concurrency 2, queues filled before it starts: messages per second from its
    first stage-1 task to its last stage-2 task, and its CPU per 10,000 messages."""
    python = subprocess.run([os.path.join(ROOT, "scripts/celery-venv.sh")], capture_output=True, text=True, check=True).stdout.strip()
    tag = uuid.uuid4().hex[:8]
    out = tempfile.mktemp(prefix="dpsd-celery-")
    env = dict(os.environ, CELERY_BENCH_URL=AMQP, CELERY_BENCH_Q1=f"celery_{tag}.stage1",
               CELERY_BENCH_Q2=f"celery_{tag}.stage2", CELERY_BENCH_OUT=out, PYTHONPATH=os.path.join(ROOT, "tools"))
    subprocess.run([python, os.path.join(ROOT, "tools/celery_chain.py"), "publish", str(n)], env=env, check=True)
    worker = subprocess.Popen([python, "-m", "celery", "-A", "celery_chain", "worker", "-Q", f"{env['CELERY_BENCH_Q1']},{env['CELERY_BENCH_Q2']}",
                               "-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(out + ".log", "w"))
    try:
        deadline = time.time() + 900
        lines = []
        while sum(1 for l in lines if l.startswith("done")) < n:
            assert worker.poll() is None and time.time() < deadline, f"the Celery worker did not finish: {out}.log"
            time.sleep(0.5)
            with open(out) if os.path.exists(out) else open(os.devnull) as f:
                lines = f.read().split("\n")
        cpu = cpu_seconds([worker.pid] + children(worker.pid))
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        for queue in (env["CELERY_BENCH_Q1"], env["CELERY_BENCH_Q2"]):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    times = [(l.split()[0], float(l.split()[1])) for l in lines if l]
    seconds = max(t for k, t in times if k == "done") - min(t for k, t in times if k == "start")
    rate = n / seconds
    return {"run": "Celery 5.7, prefork concurrency 2, acks_late, confirms, prefetch multiplier 50", "n": n,
            "per_second": rate, "of_relay": rate / relay_rate, "dpsd_cpu_per_10k": cpu * 10_000 / n}


def fill_for_list(chain, n):
    """Adds `n` executions to the chain's embedded store as the chain writes them, a created_at
    every 5 ms, oldest first (the last about 80 minutes at 1,000,000): each through w1 and w2
    with its stages in the log and the list's side table, but 1 in 100 parked at w1, 1 in
    1,000 retrying at w1, and 1 in 1,000 through a third worker w3 too."""
    db = sqlite3.connect(f"{chain.dir}/state/dpsd.sqlite")
    start = time.time() - n * 0.005
    stage = '{{"worker":"{w}","state":{s},"status":"{st}","attempts":1,"stagesPassed":{p},"startedAt":"{at}",' \
            '"finishedAt":"{at}","durationMs":0,"error":{e},"result":"test{s}"}}\n'

    def rows():
        for i in range(n):
            t = start + i * 0.005
            at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
            status = "parked" if i % 100 == 7 else "retrying" if i % 1000 == 3 else "done"
            if status == "done":
                workers = ["w1", "w2"] + (["w3"] if i % 1000 == 501 else [])
                log = "".join(stage.format(w=w, s=k + 1, st="done", p=k, at=at, e="null") for k, w in enumerate(workers))
                head = (2 if len(workers) == 2 else 3, "done", workers[-1])
            else:
                workers = ["w1"]
                log = stage.format(w="w1", s=1, st=status, p=0, at=at, e='"down"')
                head = (None, status, "w1")
            yield uuid7(t), head, at, log, workers

    batch, side = [], []
    for execution_id, (state, status, worker), at, log, workers in rows():
        batch.append((execution_id, state, status, worker, at, at, log))
        side.extend((w, at, execution_id) for w in workers)
        if len(batch) == 50_000:
            flush(db, batch, side)
            batch, side = [], []
    flush(db, batch, side)
    db.close()
    return start


def flush(db, batch, side):
    db.executemany("INSERT INTO job_state (execution_id, state, status, worker, attempts, created_at, updated_at, stages_log) "
                   "VALUES (?, ?, ?, ?, 1, ?, ?, ?)", batch)
    db.executemany("INSERT INTO execution_workers (worker, created_at, execution_id) VALUES (?, ?, ?)", side)
    db.commit()


LIST_QUERIES = [
    ("newest", ""),
    ("status=done (98 in 100)", "status=done"),
    ("status=parked (1 in 100)", "status=parked"),
    ("status=retrying (1 in 1,000)", "status=retrying"),
    ("worker=w1 (every one)", "worker=w1"),
    ("worker=w3 (1 in 1,000)", "worker=w3"),
    ("status=parked&worker=w1", "status=parked&worker=w1"),
    ("status=done&worker=w2", "status=done&worker=w2"),
    ("worker=w2 since&until (a tenth of them, mid-way)", "worker=w2&since={since}&until={until}"),
]


def timed_get(chain, path):
    started = time.perf_counter()
    page = chain.api(path)
    return (time.perf_counter() - started) * 1000, page


def list_pages(prefill, prefetch):
    """Milliseconds of GET /api/executions (limit 50) on the embedded store holding `prefill`
    executions: for each query the first page and the next by its cursor, each the median
    (and max) of 15 requests, measured from this client (HTTP included)."""
    chain = Chain("embedded", 1, prefetch)
    try:
        chain.launch()
        chain.stop_daemon()
        start = fill_for_list(chain, prefill)
        chain.launch()
        span = prefill * 0.005
        stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        results = []
        for label, query in LIST_QUERIES:
            query = query.format(since=stamp(start + 0.4 * span), until=stamp(start + 0.5 * span))
            first = f"/api/executions?limit=50&{query}"
            timed_get(chain, first)  # the cache warm, as on a dashboard that is open
            times, page = zip(*(timed_get(chain, first) for _ in range(15)))
            page = page[0]
            assert len(page["items"]) == 50 and page["next"], f"{label}: {len(page['items'])} items"
            following = f"{first}&cursor={page['next']}"
            next_times, next_page = zip(*(timed_get(chain, following) for _ in range(15)))
            assert len(next_page[0]["items"]) == 50, f"{label}: the next page has {len(next_page[0]['items'])} items"
            results.append({"query": label, "first_ms": statistics.median(times), "first_max_ms": max(times),
                            "next_ms": statistics.median(next_times), "next_max_ms": max(next_times)})
            print(results[-1], flush=True)
        return results
    finally:
        chain.stop()


def list_section(args, pages, rows):
    lines = [
        f"## The list of executions (`make bench`, group `list`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`GET /api/executions?limit=50` on the embedded store holding {args.prefill:,} executions (written by "
        "`fill_for_list`: one every 5 ms, through w1 and w2, 1 in 100 parked, 1 in 1,000 retrying, 1 in 1,000 "
        "through w3 too), release build, measured from the client over HTTP: median (max) of 15 requests, the "
        "first page and the next by its cursor. Target: under 50 ms.",
        "",
        "| query | first page ms | next page ms |",
        "|---|---|---|",
        *(f"| `{p['query']}` | {p['first_ms']:.1f} ({p['first_max_ms']:.1f}) | {p['next_ms']:.1f} ({p['next_max_ms']:.1f}) |"
          for p in pages),
        "",
        f"The chain (embedded, replicas 2, {args.n:,} messages) with the list's indexes and without them "
        "(`DPSD_BENCH_WITHOUT_LIST_INDEXES=1`: no `job_state_unfinished_by_status`, no "
        "`execution_workers`; `job_state_by_creation` stays, retention walks it), alternating, same build:",
        "",
        "| run | msg/s | dpsd CPU s / 10k msg |",
        "|---|---|---|",
        *(f"| {r['run']} | {r['per_second']:,.0f} | {r['dpsd_cpu_per_10k']:.2f} |" for r in rows),
        "",
    ]
    side = lambda key, without: [r[key] for r in rows if ("without" in r["run"]) == without]
    if side("per_second", False) and side("per_second", True):
        ratio = lambda key: statistics.median(side(key, False)) / statistics.median(side(key, True))
        lines += [f"Median with / median without: {ratio('per_second'):.3f} of the throughput, "
                  f"{ratio('dpsd_cpu_per_10k'):.3f} of the CPU per message.", ""]
    return "\n".join(lines)


def list_group(args):
    pages = list_pages(args.prefill, args.prefetch)
    rows = []
    for _ in range(4):
        for indexes in (True, False):
            rows.append(throughput("embedded", 2, args.n, args.prefetch, None, list_indexes=indexes))
            print(rows[-1], flush=True)
    section = list_section(args, pages, rows)
    print(section)
    return section


def relay(n, prefetch):
    out = subprocess.run([RELAY, AMQP, str(n), str(prefetch)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["per_second"]


def store_alone(n, prefetch, processes):
    """Stage writes per second of `processes` processes recording at once into one fresh
    embedded store, each with `prefetch` writes in flight; and the time a write then waits."""
    state = tempfile.mkdtemp(prefix="dpsd-bench-store-")
    try:
        runs = [subprocess.Popen([STORE_BENCH, state, str(n), str(prefetch), f"w{i + 1}"], stdout=subprocess.PIPE, text=True)
                for i in range(processes)]
        rates = [json.loads(run.communicate()[0])["per_second"] for run in runs]
        assert all(run.returncode == 0 for run in runs), "store_bench failed"
    finally:
        subprocess.run(["rm", "-rf", state])
    return {"processes": processes, "per_second": sum(rates), "wait_ms": statistics.mean(prefetch * 1000 / r for r in rates)}


def store_figures(s):
    who = "one process" if s["processes"] == 1 else f"{s['processes']} processes sharing the file"
    return f"{who} {s['per_second']:,.0f} writes/s, each write waiting {s['wait_ms']:.1f} ms"


def write(args, rows, store, latencies, overlaps):
    table = ["| run | messages | msg/s | of relay | CPU s / 10k msg (dpsd, or the Celery worker) | broker CPU s / 10k msg | replica peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        num = lambda k: f"{r[k]:.1f}" if k in r else ""
        rss = f"{r['replica_peak_mb']:.1f} MB" if "replica_peak_mb" in r else ""
        table.append(f"| {r['run']} | {r['n']:,} | {r['per_second']:,.0f} | {r['of_relay']:.2f} | "
                     f"{num('dpsd_cpu_per_10k')} | {num('broker_cpu_per_10k')} | {rss} |")
    section = "\n".join([
        "## `make bench` (latest run)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, release build, "
        f"prefetch {args.prefetch}; the MongoDB-wire runs use SecantusDB (slow on writes) with fewer "
        "messages. Messages per second from the first publish to the last message through stage 2; "
        "the relay is the median of three runs."
        + (f" Baseline: {args.compare}, run alternately with this build." if args.compare else ""),
        "",
        *table,
        "",
        f"Paced runs on the embedded store for {args.seconds} s, publish to final state written: "
        + "; ".join(f"{l['build']} at {l['rate']} msg/s ({l['messages']} messages) p50 {l['p50']:.0f} ms, p99 {l['p99']:.0f} ms, "
                    f"max {l['max']:.0f} ms" for l in latencies) + ".",
        "",
        "Record and forward side by side, from each stage's `done` line (medians, one replica, logged at "
        "info): " + "; ".join(f"{o['store']} ({o['stages']} stages) store {o['store_ms']:.0f} ms, confirm "
                              f"{o['confirm_ms']:.0f} ms (in series {o['in_series_ms']:.0f} ms), both done "
                              f"{o['after_services_ms']:.0f} ms after the services"
                              for o in overlaps) + ".",
        "",
        f"The embedded store alone (examples/store_bench.rs), {args.prefetch} stage writes in flight per "
        "process as a replica has: " + "; ".join(map(store_figures, store)) + ".",
        "",
    ])
    with open(args.out) as f:
        text = f.read()
    start = text.find("## `make bench` (latest run)")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    else:
        first = text.find("\n## ")
        text = text[:first + 1] + section + "\n" + text[first + 1:] if first >= 0 else text + "\n" + section
    with open(args.out, "w") as f:
        f.write(text)
    print(section)


def replace_section(path, heading, section):
    """Puts `section` where the section starting with `heading` is, or after the latest run."""
    with open(path) as f:
        text = f.read()
    start = text.find(heading)
    if start < 0:
        start = text.find("\n## ", text.find("## `make bench` (latest run)") + 1) + 1
        end = start
    else:
        end = text.find("\n## ", start + 1) + 1 or len(text)
    text = text[:start] + section + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)


GROUPS = ("chain", "quorum", "retention", "store", "paced", "celery", "overlap", "list")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--prefetch", type=int, default=50)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--prefill", type=int, default=1_000_000, help="executions the store holds before the last run")
    parser.add_argument("--compare", help="another dpsd binary, run beside this one on the embedded store")
    parser.add_argument("--only", help=f"comma-separated groups of {','.join(GROUPS)}: printed, docs not written")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    assert only <= set(GROUPS), f"--only takes {GROUPS}"
    list_figures = list_group(args) if "list" in only else None
    if not only & {"chain", "quorum", "retention", "store", "paced", "celery", "overlap"}:
        return
    limit = statistics.median(relay(args.n, args.prefetch) for _ in range(3))
    rows = [{"run": "bare amqprs relay (the limit)", "n": args.n, "per_second": limit, "of_relay": 1.0}]

    def run(*a, **kw):
        rows.append(throughput(*a, **kw))
        print(rows[-1], flush=True)

    if "chain" in only:
        for store in ["embedded"] + (["mongodb"] if MONGO else []):
            for replicas in (1, 2):
                n = args.n if store == "embedded" else min(args.n, 2000)
                builds = [DPSD] + ([args.compare] if args.compare and store == "embedded" else [])
                for dpsd in builds:
                    run(store, replicas, n, args.prefetch, limit, dpsd)
    if "quorum" in only:
        # Quorum queues (replicated, on a single node here): what they cost the broker.
        for replicas in (1, 2):
            run("embedded", replicas, args.n, args.prefetch, limit, queue_type="quorum")
    if "retention" in only:
        # Retention (SPEC 3.2): pruning beside the chain, alternating with the plain run four
        # times (medians compared: one pair is within the noise of a shared machine), and a
        # store already holding many executions against the plain run before it.
        for kwargs in [{}, {"retention": "1s"}] * 4 + [{}, {"prefill": args.prefill}]:
            run("embedded", 2, args.n, args.prefetch, limit, **kwargs)
    if "celery" in only:
        # Celery on the same chain and broker (issue 16: dpsd at least 15 times its throughput).
        rows.append(celery(min(args.n, 5000), limit))
        print(rows[-1], flush=True)
    overlaps = [overlap(store, 200 if store == "mongodb" else 2000, args.prefetch)
                for store in ["embedded"] + (["mongodb"] if MONGO else [])] if "overlap" in only else []
    print(overlaps, flush=True)
    store = [store_alone(args.n, args.prefetch, processes) for processes in (1, 2)] if "store" in only else []
    print(store, flush=True)
    builds = [DPSD] + ([args.compare] if args.compare else [])
    latencies = [paced(args.rate, args.seconds, args.prefetch, dpsd) for dpsd in builds] if "paced" in only else []
    if "paced" in only:
        # And at half the maximum rate measured for one replica (issue 16: p99 under 25 ms).
        ones = [r["per_second"] for r in rows if r["run"] == "dpsd, embedded, replicas 1"]
        top = ones[0] if ones else throughput("embedded", 1, args.n, args.prefetch, limit)["per_second"]
        latencies.append(paced(int(top / 2), args.seconds, args.prefetch))
    print(latencies, flush=True)
    if only == set(GROUPS):
        write(args, rows, store, latencies, overlaps)
        replace_section(args.out, "## The list of executions", list_figures)


if __name__ == "__main__":
    main()
