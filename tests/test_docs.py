"""The derived documentation is up to date: the CLI reference (docs/cli.md) and the README's code layout."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_and_code_layout_are_generated_from_the_code():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_links_the_cli_reference():
    assert "docs/cli.md" in (ROOT / "README.md").read_text()
