"""The workspace: where ``bratsx train`` puts runs and ``bratsx export`` puts model folders, so the design
card's commands chain without copying paths between them.

A workspace is a folder (``--workspace``, else ``$BRATSX_HOME``, else the current folder) holding::

    runs/<name>/            one training run each
    models/<name>/          one model folder each (see bratsx.modelfolder)
    .bratsx/workspace.json  the latest run and the default model

When a workspace has no model, the model bundled with bratsx (trained on real BraTS cases, see the
README's model card) is the default.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_bytes_atomic
from .errors import BratsxError
from .modelfolder import MODEL_JSON, ModelFolder

__all__ = ["ENVIRONMENT_VARIABLE", "DefaultModel", "Workspace", "bundled_models"]

#: Environment variable naming the workspace when ``--workspace`` is not given.
ENVIRONMENT_VARIABLE = "BRATSX_HOME"
_BUNDLED = Path(__file__).parent / "models"


def bundled_models() -> list[ModelFolder]:
    """The model folders shipped inside the package."""
    if not _BUNDLED.is_dir():
        return []
    return [ModelFolder.read(p) for p in sorted(_BUNDLED.iterdir()) if (p / MODEL_JSON).is_file()]


@dataclass(frozen=True)
class DefaultModel:
    """The model a command uses when none is named, and where it comes from (``workspace`` or ``bundled``)."""

    folder: ModelFolder
    origin: str


@dataclass(frozen=True)
class Workspace:
    """A workspace folder (nothing is created until something is written)."""

    root: Path

    @classmethod
    def locate(cls, explicit: Path | None = None) -> Workspace:
        """``explicit``, else ``$BRATSX_HOME``, else the current folder."""
        return cls(Path(explicit or os.environ.get(ENVIRONMENT_VARIABLE) or Path.cwd()).expanduser())

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def _state_file(self) -> Path:
        return self.root / ".bratsx" / "workspace.json"

    def _state(self) -> dict[str, str]:
        try:
            state = json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise BratsxError(f"{self._state_file}: unreadable workspace state ({error}); delete it to start over")
        return state if isinstance(state, dict) else {}

    def _remember(self, key: str, path: Path) -> None:
        state = self._state()
        state[key] = str(Path(path).resolve())
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self._state_file, (json.dumps(state, indent=2) + "\n").encode())

    def new_run_dir(self, name: str | None = None) -> Path:
        """``runs/<name>`` (default name: the date and time), refusing a name already used."""
        name = name or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise BratsxError(f"--name {name!r}: give a plain folder name")
        path = self.runs_dir / name
        if path.exists():
            raise BratsxError(f"run {path} exists; choose another --name, or continue it with --resume --out {path}")
        return path

    def set_latest_run(self, run_dir: Path) -> None:
        self._remember("latest_run", run_dir)

    def latest_run(self) -> Path:
        """The run ``bratsx train`` last started here.

        Raises:
            BratsxError: no run recorded (or it is gone), saying how to make one.
        """
        recorded = self._state().get("latest_run")
        if recorded and Path(recorded).is_dir():
            return Path(recorded)
        raise BratsxError(f"no training run in workspace {self.root}; train one (bratsx train DATA) or name a run "
                          "directory or checkpoint")

    def model_dir(self, name: str) -> Path:
        return self.models_dir / name

    def set_default_model(self, folder: Path) -> None:
        self._remember("default_model", folder)

    def models(self) -> list[ModelFolder]:
        """The workspace's model folders."""
        if not self.models_dir.is_dir():
            return []
        return [ModelFolder.read(p) for p in sorted(self.models_dir.iterdir()) if (p / MODEL_JSON).is_file()]

    def default_model(self) -> DefaultModel:
        """The workspace's default model (the last export), else the bundled one.

        Raises:
            BratsxError: neither exists, saying how to make one.
        """
        recorded = self._state().get("default_model")
        if recorded and (Path(recorded) / MODEL_JSON).is_file():
            return DefaultModel(ModelFolder.read(recorded), "workspace")
        bundled = bundled_models()
        if bundled:
            return DefaultModel(bundled[0], "bundled")
        raise BratsxError(f"no model in workspace {self.root} and none bundled; export one (bratsx export) or "
                          "name one with --model")
