"""Inference runtime: open a model, segment a case, run a directory. Never imports torch at import time.

The public entry points:

- :func:`open_model`: a model folder or file and a backend name -> a running backend and its contract.
- :class:`Runner` (from :class:`RunnerSpec` + :class:`ModelSpec`): the open model(s), contract and settings.
- :func:`segment_case`: one case and a runner -> its segmentation (the one path every caller shares).
- :func:`run_batch`: cases, a runner and a scheduler -> outputs, per-case records, metrics, summary.
"""

from .backends import Backend, BackendName
from .batch import BatchResult, Threads, run_batch
from .ensemble import ModelSpec
from .infer import InferOptions
from .models import OpenedModel, open_model
from .runner import Runner, RunnerSpec
from .segment import Segmentation, SegmentOptions, segment_case

__all__ = [
    "Backend",
    "BackendName",
    "BatchResult",
    "InferOptions",
    "ModelSpec",
    "OpenedModel",
    "Runner",
    "RunnerSpec",
    "SegmentOptions",
    "Segmentation",
    "Threads",
    "open_model",
    "run_batch",
    "segment_case",
]
