"""The copy pipeline: partitions, executors, batching, retries, checkpoints, dead letters."""

from vecmigrate.pipeline.copy import CopyOptions, CopyResult, copy_collection
from vecmigrate.pipeline.retry import RetryPolicy

__all__ = ["CopyOptions", "CopyResult", "RetryPolicy", "copy_collection"]
