"""Raw scans to BraTS-ready cases and segmentations back to the patient (``bratsx prepare``).

Torch-free: SimpleITK registration, pydicom/highdicom for DICOM, deepbet's networks on ONNX Runtime.
The public API, for the CLI and the runtime's ``--prepare`` hook:

* :func:`prepare_input` (``INPUT`` -> ``OUT/<case id>/`` per case, failures reported per case);
* :func:`segmentation_to_native` (an atlas-space segmentation -> each native grid, DICOM-SEG, mL).
"""

from __future__ import annotations

from .atlas import Atlas
from .identify import parse_sequence_map
from .native import NativeResult, segmentation_to_native
from .pipeline import PreparedCase, PrepareOptions, prepare_case, prepare_input

__all__ = ["Atlas", "NativeResult", "PrepareOptions", "PreparedCase", "parse_sequence_map", "prepare_case",
           "prepare_input", "segmentation_to_native"]
