"""The inference install has no torch: the runtime, the shared modules and the CLI must import and run without it.

Two checks. Statically, every module of the package (found by walking it, not from a list) is parsed and
its module-level imports are checked: only the training and export stages may import torch there.
Dynamically, ``bratsx infer`` (ONNX Runtime) and ``bratsx evaluate`` run in a subprocess where importing
torch raises.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bratsx

#: Modules that may import torch at module level: the network and the stages that need it by nature.
TORCH_STAGES = ("bratsx.network.", "bratsx.trainer.", "bratsx.export.", "bratsx.importers.")
#: Modules of those stages that must stay importable without torch (the CLI reads them for --help).
TORCH_FREE_IN_STAGES = {"bratsx.network", "bratsx.trainer", "bratsx.trainer.config", "bratsx.export",
                        "bratsx.export.options", "bratsx.importers", "bratsx.importers.options",
                        "bratsx.importers.channels", "bratsx.importers.nnunet_folder"}
HEAVY = ("torch", "tensorrt")

BLOCK_TORCH = (
    "import sys\n"
    "class _Blocked:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'tensorrt', 'monai'):\n"
    "            raise ImportError(f'{name} is blocked in this test')\n"
    "sys.meta_path.insert(0, _Blocked())\n"
)


def all_modules() -> list[str]:
    names = ["bratsx"]
    for info in pkgutil.walk_packages(bratsx.__path__, "bratsx."):
        names.append(info.name)
    return sorted(names)


def module_level_imports(name: str) -> set[str]:
    """Top-level packages imported at module level (not inside functions), by AST."""
    source = Path(importlib.util.find_spec(name).origin).read_text()
    found = set()
    for node in ast.parse(source).body:  # module level only; nested imports are lazy by construction
        statements = [node]
        if isinstance(node, (ast.If, ast.Try)):  # e.g. `try: import x` at module level still counts
            statements = list(ast.walk(node))
        for statement in statements:
            if isinstance(statement, ast.Import):
                found.update(alias.name.split(".")[0] for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
                found.add(statement.module.split(".")[0])
    return found


def torch_free_modules() -> list[str]:
    return [m for m in all_modules() if not m.startswith(TORCH_STAGES) or m in TORCH_FREE_IN_STAGES]


def test_the_walk_finds_the_runtime_and_shared_modules():
    modules = torch_free_modules()
    for expected in ("bratsx.runtime.infer", "bratsx.runtime.segment", "bratsx.runtime.models", "bratsx.imageio",
                     "bratsx.metrics", "bratsx.cli.infer", "bratsx.workspace"):
        assert expected in modules


@pytest.mark.parametrize("module", torch_free_modules())
def test_no_torch_at_module_level(module):
    heavy = module_level_imports(module) & set(HEAVY)
    assert not heavy, f"{module} imports {sorted(heavy)} at module level; import it inside the function that needs it"


def test_the_check_catches_a_planted_import(tmp_path, monkeypatch):
    planted = tmp_path / "planted.py"
    planted.write_text('"""A runtime module with a mistake."""\nimport numpy\nimport torch\n')
    spec = importlib.util.spec_from_file_location("bratsx.runtime.planted", planted)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    assert "torch" in module_level_imports("bratsx.runtime.planted")


def run_without_torch(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, check=False,
                          cwd=cwd)


def test_every_torch_free_module_imports_with_torch_blocked():
    importable = [m for m in torch_free_modules() if not m.endswith(".__main__")]  # __main__ runs the CLI
    imports = "\n".join(f"import {module}" for module in importable)
    result = run_without_torch(imports + "\nprint('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_infer_and_evaluate_run_with_torch_blocked(tiny_onnx, tmp_path):
    from bratsx.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "cases", cases=2, shape=(40, 40, 32), seed=3)
    code = (
        "from bratsx.cli import main\n"
        f"sys.argv = ['bratsx', 'infer', {str(tmp_path / 'cases')!r}, '--model', {str(tiny_onnx)!r}, "
        f"'--backend', 'ort', '--out', {str(tmp_path / 'out')!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        f"sys.argv = ['bratsx', 'evaluate', {str(tmp_path / 'out')!r}, {str(tmp_path / 'cases')!r}]\n"
        "main()\n"
    )
    result = run_without_torch(code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list((tmp_path / "out").glob("*.nii.gz"))) == 2
    assert (tmp_path / "out" / "evaluation" / "summary.json").exists()


def test_a_run_directory_without_torch_gives_one_line(tiny_run, tmp_path):
    from bratsx.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "cases", cases=1, shape=(40, 40, 32), seed=3)
    code = ("from bratsx.cli import main\n"
            f"sys.argv = ['bratsx', 'infer', {str(tmp_path / 'cases')!r}, '--model', {str(tiny_run)!r}]\n"
            "main()\n")
    result = run_without_torch(code)
    assert result.returncode == 2
    assert "pip install 'bratsx[train]'" in result.stderr and "Traceback" not in result.stderr


def test_cli_help_runs_without_torch():
    result = run_without_torch("from bratsx.cli import main\nsys.argv = ['bratsx', '--help']\nmain()")
    assert result.returncode == 0, result.stderr
    assert "synth" in result.stdout
