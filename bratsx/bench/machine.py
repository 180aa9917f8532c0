"""Machine information recorded with every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from ..extras import optional_module

LIBRARIES = ("numpy", "nibabel", "torch", "onnxruntime", "openvino", "isal")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_name() -> str | None:
    """The first CUDA GPU's name, when torch is installed and sees one."""
    torch = optional_module("torch")
    if torch is None:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict:
    """CPU, cores, GPU, Python and the installed versions of the libraries that decide the speed."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_name(), "python": platform.python_version(),
            **versions}
