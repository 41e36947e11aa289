"""Code or decode entries side by side on threads; hand the results back in their order.

Every network runs on one intra-op thread per call (so its sums run in the same order on every
machine, see Networks), which leaves the other cores idle while one small photo is coded or
decoded. Working on several entries at once uses them. Threads suffice: ONNX Runtime, torch,
numpy, the entropy coders and Pillow do their heavy work without the GIL. What comes out does
not depend on the number of workers: each entry is computed the same way on whichever thread.

Memory stays bounded: at most `workers` entries are in flight beyond the one being written,
and photos are admitted only while their activations fit a budget (one photo larger than the
budget runs alone).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Callable, Generic, Iterable, Iterator, NoReturn, TypeVar

from imgarc.cores import usable_cores

T = TypeVar("T")
K = TypeVar("K")

# A photo's memory grows with the network activations in flight: for a decode, its padded pixels
# (or its tiles') times the synthesis width (ImageCodec.synthesis_footprint), for a compress
# ImageCodec.analysis_footprint, in the same unit. Measured on ONNX Runtime, a 768x512 photo
# through a 128-channel g_s held ~440 MB (~9 bytes per unit); the budget, ~1.2 GB, admits two such
# photos at once; a photo over it runs alone.
ACTIVATION_BUDGET = 140_000_000
MAX_WORKERS = 4
WORKER_NAME = "imgarc-worker"  # the pool's threads are named f"{WORKER_NAME}-{n}"


def pool_workers() -> int:
    """Entries coded or decoded side by side: one per core this process may use, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, usable_cores()))


@dataclass
class Task(Generic[K, T]):
    key: K  # what the caller needs back with the result (a name, a header)
    run: Callable[[], T]
    activations: int = 0  # a photo's padded pixels × its g_s width; 0 for everything else


def failed(key: K, error: BaseException) -> Task[K, NoReturn]:
    """A task that raises `error`: an entry that could not even be read, reported in its turn."""
    return Task(key, partial(_raise, error))


def _raise(error: BaseException) -> NoReturn:
    raise error


def in_order(tasks: Iterable[Task[K, T]], workers: int, activation_budget: int = ACTIVATION_BUDGET) -> Iterator[tuple[K, Future[T]]]:
    """Run each task's `run` on a pool; yield (key, finished future) in the tasks' order.

    `future.result()` re-raises what `run` raised, so the caller handles a failed entry
    where it handles it today, in order.
    """
    if workers <= 1:
        for task in tasks:
            future: Future[T] = Future()
            _run_into(task.run, future)
            yield task.key, future
        return
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    # Daemon threads, not a ThreadPoolExecutor: on Ctrl-C the process exits at once
    # instead of waiting for the photos being coded (a 12 MP one takes ~10 s here).
    threads = [threading.Thread(target=_work, args=(jobs,), name=f"{WORKER_NAME}-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    pending: deque[tuple[Task[K, T], Future[T]]] = deque()
    try:
        in_flight = 0  # activations of the photos pending
        for task in tasks:
            while pending and (len(pending) > workers or in_flight + task.activations > activation_budget):
                done, future = pending.popleft()
                future.exception()  # waits for it
                in_flight -= done.activations
                yield done.key, future
            future = Future()
            jobs.put((task.run, future))
            pending.append((task, future))
            in_flight += task.activations
        while pending:
            done, future = pending.popleft()
            future.exception()
            yield done.key, future
    finally:
        for _, future in pending:
            future.cancel()
        for _ in range(workers):
            jobs.put(None)
    # Every task is done: the idle workers end now rather than during the interpreter's shutdown,
    # where a thread that ran torch's autograd (`compress --refine`) and exits late can abort the
    # process ("terminate called without an active exception": seen in 2 of ~150 bench steps).
    for thread in threads:
        thread.join()


def _work(jobs: queue.SimpleQueue) -> None:
    while (job := jobs.get()) is not None:
        run, future = job
        if future.set_running_or_notify_cancel():
            _run_into(run, future)


def _run_into(run: Callable[[], T], future: Future[T]) -> None:
    try:
        future.set_result(run())
    except BaseException as e:  # delivered by future.result() in the caller's thread
        future.set_exception(e)
