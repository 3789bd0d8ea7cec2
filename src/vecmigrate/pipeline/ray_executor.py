"""Run copy partitions as Ray tasks (``--executor ray`` or ``ray:ADDRESS``).

Each partition becomes one streaming-generator task: the worker opens both connectors
from their URIs (secret references resolve on the worker), rebuilds the mapping and
yields one outcome per acknowledged batch, refused records included. The driver
consumes the streams and does what it does for local threads: checkpoint after each
acknowledged batch, write dead letters, count, show progress. So ``--resume``, dead
letters and verification are the same whichever executor ran the partitions.

Tasks rather than Ray Data: a partition's resume token must advance only after its own
batch was acknowledged, and a ``Datasink`` acknowledges whole write tasks, not batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from vecmigrate.errors import ConfigError
from vecmigrate.pipeline.deadletter import DeadLetterWriter
from vecmigrate.pipeline.jobstate import PartitionState
from vecmigrate.pipeline.options import BatchOutcome, PartitionTask
from vecmigrate.pipeline.streams import run_partition_task

# Batches a worker may run ahead of the driver's checkpoints (bounds object-store use).
READ_AHEAD = 4


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray", hint="pip install 'vecmigrate[ray]'"
        ) from None
    return ray


def ensure_ray(executor: str, workers: int) -> Any:
    """Connect to the cluster named by ``ray:ADDRESS``, or start a local Ray instance."""
    ray = _ray()
    if not ray.is_initialized():
        address = executor.partition(":")[2] or os.environ.get("RAY_ADDRESS")
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(1, workers), **kwargs)
    return ray


def ray_streams(
    task: PartitionTask,
    states: list[PartitionState],
    executor: str,
    dead: DeadLetterWriter,
) -> dict[int, Callable[[], Iterator[BatchOutcome]]]:
    """One outcome stream per partition, each backed by a Ray streaming task."""
    if not executor.startswith("ray"):
        raise ConfigError(f"unknown executor {executor!r}", hint="use local, ray or ray:ADDRESS")
    ray = ensure_ray(executor, task.options.workers)
    remote = ray.remote(num_returns="streaming", max_retries=0)(run_partition_task).options(
        _generator_backpressure_num_objects=READ_AHEAD
    )

    def stream(state: PartitionState) -> Iterator[BatchOutcome]:
        for ref in remote.remote(task, state):
            outcome: BatchOutcome = ray.get(ref)
            for letter in outcome.refused_records:
                dead.write(letter.batch, letter.reason, letter.field)
            yield outcome

    return {s.seq: partial(stream, s) for s in states}
