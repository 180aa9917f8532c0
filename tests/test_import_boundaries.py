"""The inference install has no torch: these modules must import (and the CLI start) without it."""

import subprocess
import sys

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['tensorrt'] = None; "

TORCH_FREE = [
    "bratsx",
    "bratsx.cases",
    "bratsx.labels",
    "bratsx.geometry",
    "bratsx.imageio",
    "bratsx.preprocessing",
    "bratsx.synth",
    "bratsx.atomic",
    "bratsx.contract",
    "bratsx.metrics",
    "bratsx.sliding_window",
    "bratsx.runtime",
    "bratsx.runtime.backends",
    "bratsx.runtime.predictor",
    "bratsx.runtime.tensorrt_backend",
    "bratsx.runtime.infer",
    "bratsx.runtime.summary",
    "bratsx.cli",
]


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, check=False)


def test_shared_modules_runtime_and_cli_import_without_torch():
    imports = "; ".join(f"import {module}" for module in TORCH_FREE)
    result = run_without_torch(imports + "; print('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_help_runs_without_torch():
    result = run_without_torch("from bratsx.cli import main; sys.argv = ['bratsx', '--help']; main()")
    assert result.returncode == 0, result.stderr
    assert "synth" in result.stdout
