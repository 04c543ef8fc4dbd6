"""The Celery side of `make bench`'s comparison (issue 16): the example chain as two Celery
tasks, configured as the issue asks, so that dpsd is measured against Celery in one run.

The Celery worker imports this module (`celery -A celery_chain worker`); bench.py runs it
under the Python of scripts/celery-venv.sh with the environment below and times it.

  CELERY_BENCH_URL     the broker (amqp://...)
  CELERY_BENCH_Q1, _Q2 the two stages' queues
  CELERY_BENCH_OUT     a file: each process appends "start T" on its first stage-1 task and
                       "done T" after each stage-2 task (Unix seconds), which bench.py counts

Setting: one prefork worker, concurrency 2; acks_late (acked after the task, as dpsd acks
after its record and forward); no result backend; persistent messages; publisher confirms
on; worker_prefetch_multiplier 50; stage 2 sent by Celery's own chain when stage 1 returns.

usage: python celery_chain.py publish N   (publishes N chains, with confirms)
"""
import os
import sys
import time

from celery import Celery, chain

Q1, Q2 = os.environ["CELERY_BENCH_Q1"], os.environ["CELERY_BENCH_Q2"]
OUT = os.environ["CELERY_BENCH_OUT"]

app = Celery("celery_chain", broker=os.environ["CELERY_BENCH_URL"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    result_backend=None,
    task_default_delivery_mode="persistent",
    broker_transport_options={"confirm_publish": True},
    worker_prefetch_multiplier=50,
    worker_concurrency=2,
    task_routes={"celery_chain.stage1": {"queue": Q1}, "celery_chain.stage2": {"queue": Q2}},
    worker_hijack_root_logger=False,
)

_started = False


def _note(line):
    with open(OUT, "a") as f:
        f.write(line + "\n")


@app.task(name="celery_chain.stage1")
def stage1(message):
    """dpsd's w1: one constant service; the result travels on as `_last`."""
    global _started
    if not _started:
        _started = True
        _note(f"start {time.time()}")
    return dict(message, _last="test1")


@app.task(name="celery_chain.stage2")
def stage2(message):
    """dpsd's w2: two constant services, then the chain ends."""
    message = dict(message, _last="test2_0")
    message["_last"] = "test2_1"
    _note(f"done {time.time()}")
    return None


if __name__ == "__main__" and sys.argv[1:2] == ["publish"]:
    with app.connection_for_write() as connection:
        producer = app.amqp.Producer(connection)
        for i in range(int(sys.argv[2])):
            chain(stage1.s({"mydata": {}, "executionId": f"celery-{i}"}), stage2.s()).apply_async(producer=producer)
