"""Inference runtime: open a model, segment a case, run a directory. Never imports torch at import time.

The public entry points:

- :func:`open_model`: a model folder or file and a backend name -> a running backend and its contract.
- :func:`segment_case`: one case -> its segmentation (the one path every caller shares).
- :func:`infer_cases`: a directory of cases -> outputs, per-case records, metrics.
"""

from .backends import Backend, BackendName
from .infer import InferOptions, infer_cases
from .models import OpenedModel, open_model
from .segment import Segmentation, SegmentOptions, segment_case

__all__ = [
    "Backend",
    "BackendName",
    "InferOptions",
    "OpenedModel",
    "SegmentOptions",
    "Segmentation",
    "infer_cases",
    "open_model",
    "segment_case",
]
