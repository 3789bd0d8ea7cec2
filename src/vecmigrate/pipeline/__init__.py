"""The copy pipeline: partitions, executors, batching, retries, checkpoints, dead letters."""

from vecmigrate.pipeline.copy import copy_collection
from vecmigrate.pipeline.options import CopyOptions, CopyResult
from vecmigrate.retry import RetryPolicy

__all__ = ["CopyOptions", "CopyResult", "RetryPolicy", "copy_collection"]
