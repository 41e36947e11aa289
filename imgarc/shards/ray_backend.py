"""Shards on a Ray cluster through Ray Data: the specs go through `map_batches` on an actor pool,
each actor loading the model once (compressor_for) and coding one shard per batch.

Only imported when `--ray` is given (Ray is the optional `imgarc[cluster]` extra). Each shard is
written by the actor that codes it, to the path in its spec: on a cluster that path must be on
storage every node sees (a shared file system); the manifest is written here, by the driver.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Iterator

# imgarc reports progress itself: Ray Data's INFO lines and bars would bury it (read when Ray Data loads).
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")

import numpy as np  # noqa: E402
import ray  # noqa: E402

from imgarc.blas_threads import one_blas_thread
from imgarc.cores import usable_cores
from imgarc.shards.job import ShardResult, ShardSpec, compress_shard

LOCAL = "local"


class ShardActor:
    """A Ray Data actor: codes the shards of the batches it is given."""

    def __init__(self) -> None:
        one_blas_thread()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [pickle.dumps(compress_shard(pickle.loads(spec))) for spec in batch["spec"]]
        return {"index": batch["index"], "result": np.array(results, dtype=object)}


def run_on_ray(specs: list[ShardSpec], workers: int, address: str | None) -> Iterator[ShardResult]:
    """compress_shard on `workers` actors of the cluster at `address` (None or "local": a local
    cluster on this machine's cores); results in the specs' order."""
    started_here = not ray.is_initialized()
    if started_here:
        if address in (None, LOCAL):
            ray.init(num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
        items = [{"index": spec.index, "spec": pickle.dumps(spec)} for spec in specs]
        rows = (ray.data.from_items(items, override_num_blocks=len(items))
                .map_batches(ShardActor, batch_size=1, concurrency=min(workers, len(items)), num_cpus=cpus)
                .take_all())
        for row in sorted(rows, key=lambda r: r["index"]):
            yield pickle.loads(row["result"])
    finally:
        if started_here:
            ray.shutdown()
