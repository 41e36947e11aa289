"""Where shards are coded: in this process, in a pool of worker processes, or on a Ray cluster.

Every backend runs the same `compress_shard(spec)` on the same specs, so a shard's bytes do not
depend on which one ran it or on how many workers there were; results come back in shard order.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum
from typing import Iterator

from imgarc.cores import usable_cores
from imgarc.errors import ImgarcError, MissingExtraError, UsageError
from imgarc.extras import installed
from imgarc.shards.job import ShardResult, ShardSpec, compress_shard, pin_worker

RAY_EXTRA = "pip install 'imgarc[cluster]'"


class WorkerDiedError(ImgarcError):
    """A worker process ended without finishing its shard (killed, out of memory)."""


class BackendKind(Enum):
    IN_PROCESS = "in-process"  # one shard after another, each on every core of this process
    PROCESSES = "processes"  # a local pool of worker processes, the cores shared among them
    RAY = "ray"  # Ray Data on a cluster: an actor pool, the model loaded once per actor


@dataclass(frozen=True)
class Backend:
    kind: BackendKind = BackendKind.IN_PROCESS
    workers: int = 1  # processes or actors
    ray_address: str | None = None  # None or "local": a local cluster started for this run

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}")


def run_shards(specs: list[ShardSpec], backend: Backend) -> Iterator[ShardResult]:
    """compress_shard(spec) for every spec, on `backend`; results in the specs' order."""
    if backend.kind is BackendKind.IN_PROCESS or not specs:
        yield from map(compress_shard, specs)
    elif backend.kind is BackendKind.PROCESSES:
        yield from _on_processes(specs, backend.workers)
    else:
        if not installed("ray"):
            raise MissingExtraError(f"--ray needs Ray, which comes with imgarc's cluster extra: {RAY_EXTRA}")
        from imgarc.shards import ray_backend  # the optional extra: imported only when asked for

        yield from ray_backend.run_on_ray(specs, backend.workers, backend.ray_address)


def _on_processes(specs: list[ShardSpec], workers: int) -> Iterator[ShardResult]:
    # spawn, not fork: the parent may hold ONNX Runtime's and numpy's threads, which fork does not copy.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(usable_cores()))
    workers = min(workers, len(specs))
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=pin_worker,
                                 initargs=(counter, cores, workers)) as pool:
            yield from pool.map(compress_shard, specs)
    except BrokenProcessPool as e:
        raise WorkerDiedError("a worker process died before finishing its shard (killed, or out of memory); "
                              "the shards it finished are kept: run the same command again to finish the archive") from e
