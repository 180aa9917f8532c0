"""Model folders: what ``bratsx export`` writes and every runtime reads.

A model folder describes itself, as nnU-Net's trained-model folders do::

    models/<name>/
      model.json          contract, source run and checkpoint, validation Dice, gates passed, file hashes
      model.onnx          fp32, verified against PyTorch
      model.fp16.onnx     fp16 compute (only when it passed its accuracy gate)
      model.int8.xml/.bin OpenVINO IR quantized to int8 by NNCF (only when it passed its accuracy gate)
      model.engine        TensorRT engine (only when built and gated), with its build sidecar model.engine.json
      fold_<k>/           (an ensemble, bratsx export RUN_A RUN_B ... or --folds CV) one model folder per member,
                          listed in model.json's "members"; the members' logits are averaged
      model.postprocess.json  the post-processing spec tuned on data (bratsx postprocess tune), replacing the
                          one in the ONNX contract; model.json records its hash, how it was chosen and the
                          specs it replaced (its history, which --reset walks back)

:func:`file_for` picks the file each backend runs, so users name a folder and a backend and never
a file.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import write_bytes_atomic
from .contract import ModelContract, ensemble_differences, file_sha256
from .errors import BratsxError
from .postprocess import PostprocessSpec, read_spec

__all__ = ["MODEL_FILES", "MODEL_JSON", "POSTPROCESS_FILE", "ModelFolder", "carry_postprocess", "find_model_folder",
           "reset_postprocess", "set_postprocess", "write_ensemble_json", "write_model_json"]

MODEL_JSON = "model.json"
#: The folder's tuned post-processing spec (its hash, provenance and history are in model.json).
POSTPROCESS_FILE = "model.postprocess.json"
#: The files a model folder may hold, by what they are.
MODEL_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.xml", "engine": "model.engine"}
#: Model files kept only while model.json records their accuracy gate as passed.
GATED_FILES = ("fp16", "int8")
_FORMAT = "bratsx-model"


@dataclass(frozen=True)
class ModelFolder:
    """A model folder and its ``model.json``."""

    path: Path
    info: dict[str, Any]

    @classmethod
    def read(cls, path: Path | str) -> ModelFolder:
        """Read ``path/model.json``.

        Raises:
            BratsxError: no ``model.json``, or one that is not a bratsx model description.
        """
        path = Path(path)
        description = path / MODEL_JSON
        try:
            info = json.loads(description.read_text())
        except FileNotFoundError:
            raise BratsxError(f"{path}: no {MODEL_JSON}; is it a model folder written by bratsx export?") from None
        except (OSError, ValueError) as error:
            raise BratsxError(f"{description}: not a readable model description ({error})") from error
        if not isinstance(info, dict) or info.get("format") != _FORMAT:
            raise BratsxError(f"{description}: not a bratsx model description (no '{_FORMAT}' marker)")
        return cls(path, info)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def contract(self) -> ModelContract:
        return ModelContract.from_dict(self.info["contract"])

    def file(self, kind: str) -> Path | None:
        """The folder's ``fp32``, ``fp16``, ``int8`` or ``engine`` file, when present (fp16 and int8 only when
        gated; int8 is the IR's ``.xml``, its weights in the ``.bin`` beside it)."""
        path = self.path / MODEL_FILES[kind]
        if not path.is_file():
            return None
        if kind in GATED_FILES and not self.info.get("gates", {}).get(kind, {}).get("passed", False):
            return None
        return path

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint it was exported from, when that file still exists (for the torch backend)."""
        recorded = self.info.get("source", {}).get("checkpoint")
        return Path(recorded) if recorded and Path(recorded).is_file() else None

    @property
    def imported_from(self) -> str | None:
        """The framework an imported folder's network comes from (``nnunetv2``); ``None`` for bratsx's own."""
        framework = self.info.get("source", {}).get("framework")
        return str(framework) if framework else None

    @property
    def members(self) -> list[ModelFolder]:
        """The member model folders of an ensemble folder (empty for a single model).

        Raises:
            BratsxError: a member listed in model.json is missing or not a model folder.
        """
        return [ModelFolder.read(self.path / name) for name in self.info.get("members", [])]

    @property
    def postprocess(self) -> PostprocessSpec | None:
        """The folder's tuned post-processing spec (``None``: none, the ONNX contract's applies).

        Raises:
            BratsxError: model.json records a spec whose file is missing, altered or invalid.
        """
        if self.info.get("postprocess") is None:
            return None
        path = self.path / POSTPROCESS_FILE
        recorded = self.info.get("files", {}).get(POSTPROCESS_FILE, {}).get("sha256")
        if not path.is_file() or file_sha256(path) != recorded:
            raise BratsxError(f"{path}: missing or not the file {MODEL_JSON} describes (hash differs); tune again "
                              "with bratsx postprocess tune, or undo with --reset")
        return read_spec(path)

    @property
    def precisions(self) -> list[str]:
        """Which of fp32, fp16, int8 and a TensorRT engine the folder holds (an ensemble: its first member's)."""
        if self.info.get("members"):
            return self.members[0].precisions
        return [kind for kind in MODEL_FILES if self.file(kind) is not None]


def find_model_folder(path: Path | str) -> ModelFolder | None:
    """The model folder ``path`` is, or lies in (``path`` a file inside one); ``None`` otherwise."""
    path = Path(path)
    for candidate in (path, path.parent) if path.is_file() else (path,):
        if (candidate / MODEL_JSON).is_file():
            return ModelFolder.read(candidate)
    return None


def write_model_json(
    folder: Path,
    name: str,
    contract: ModelContract,
    source: dict[str, Any],
    gates: dict[str, Any],
) -> Path:
    """Describe ``folder`` (atomically): the contract, the source, the gates and a hash of every model file.

    ``name`` is the model folder's final name: ``folder`` may be the staging folder it is renamed from.
    """
    files = {path.name: {"sha256": file_sha256(path), "bytes": path.stat().st_size}
             for path in sorted(folder.glob("model.*")) if path.is_file() and path.name != MODEL_JSON}
    info = {
        "format": _FORMAT,
        "format_version": 1,
        "name": name,
        "created": _now(),
        "bratsx_version": __version__,
        "source": source,
        "contract": contract.to_dict(),
        "validation_dice": contract.validation_dice,
        "gates": gates,
        "files": files,
    }
    _write_info(folder, info)
    return folder / MODEL_JSON


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_ensemble_json(folder: Path, name: str, members: list[str]) -> Path:
    """Describe ``folder`` as an ensemble of the model folders ``members`` (sub-folder names, already written):
    their shared contract, each member's source and validation Dice, and no file of its own.

    Raises:
        BratsxError: fewer than 2 members, or members that differ in patch size, output mode or input channels.
    """
    folders = [ModelFolder.read(folder / member) for member in members]
    if len(folders) < 2:
        raise BratsxError(f"{folder}: an ensemble needs at least 2 members, got {len(folders)}")
    contract = folders[0].contract
    differences = ensemble_differences([f.contract for f in folders])
    if differences:
        raise BratsxError(f"the members of an ensemble must share their {' and '.join(differences)}; these differ: "
                          + ", ".join(f"{f.name} {f.contract.patch_size} {f.contract.output_mode.value} "
                                      f"{'+'.join(f.contract.modality_order)}" for f in folders))
    source = {"description": f"ensemble of {len(folders)} runs, logits averaged",
              "members": [{"name": f.name, "source": f.info.get("source"),
                           "validation_dice": f.contract.validation_dice} for f in folders],
              "averaging": "logits of every member, tile by tile"}
    path = write_model_json(folder, name, replace(contract, validation_dice=None, checkpoint_sha256=None), source, {})
    info = json.loads(path.read_text())
    _write_info(folder, {**info, "members": list(members)})
    return path


def _write_info(folder: Path, info: dict[str, Any]) -> None:
    write_bytes_atomic(folder / MODEL_JSON, (json.dumps(info, indent=2) + "\n").encode())


def set_postprocess(folder: ModelFolder, spec: PostprocessSpec, how: dict[str, Any]) -> ModelFolder:
    """Store ``spec`` as ``folder``'s post-processing: ``model.postprocess.json`` (atomically), hashed in model.json
    with ``how`` it was chosen; the spec it replaces (if any) goes to the end of ``postprocess_history``.

    Returns:
        The folder as now described.
    """
    info = json.loads(json.dumps(folder.info))  # a deep copy: the caller's stays as it was
    if info.get("postprocess") is not None:
        info.setdefault("postprocess_history", []).append(info["postprocess"])
    data = (json.dumps(spec.to_dict(), indent=2) + "\n").encode()
    path = write_bytes_atomic(folder.path / POSTPROCESS_FILE, data)
    info.setdefault("files", {})[POSTPROCESS_FILE] = {"sha256": file_sha256(path), "bytes": len(data)}
    info["postprocess"] = {"spec": spec.to_dict(), "set": _now(), **how}
    _write_info(folder.path, info)
    return ModelFolder(folder.path, info)


def _provenance(entry: dict[str, Any]) -> dict[str, Any]:
    """How a recorded spec was chosen: its model.json entry without the spec itself and the time it was set."""
    return {k: v for k, v in entry.items() if k not in ("spec", "set")}


def carry_postprocess(previous: ModelFolder, folder: Path) -> None:
    """Give the freshly written model folder ``folder`` the tuned spec of ``previous`` (the folder it replaces), with
    its provenance and history: re-exporting a model keeps what was tuned for it."""
    if previous.info.get("postprocess") is None:
        return
    spec = previous.postprocess
    entry = previous.info["postprocess"]
    carried = set_postprocess(ModelFolder.read(folder), spec, _provenance(entry))
    if previous.info.get("postprocess_history"):
        _write_info(folder, {**carried.info, "postprocess_history": previous.info["postprocess_history"]})


def reset_postprocess(folder: ModelFolder) -> ModelFolder:
    """Undo the last :func:`set_postprocess`: restore the spec it replaced, or, with no history, remove the tuned
    spec (the ONNX contract's applies again).

    Raises:
        BratsxError: the folder has no tuned spec to undo.
    """
    info = json.loads(json.dumps(folder.info))
    if info.get("postprocess") is None:
        raise BratsxError(f"{folder.path}: no tuned post-processing to undo")
    history = info.get("postprocess_history") or []
    if history:
        previous = history.pop()
        return set_postprocess(ModelFolder(folder.path, {**info, "postprocess": None}),
                               PostprocessSpec.from_dict(previous["spec"]), _provenance(previous))
    info.pop("postprocess", None)
    info.pop("postprocess_history", None)
    info.get("files", {}).pop(POSTPROCESS_FILE, None)
    _write_info(folder.path, info)
    (folder.path / POSTPROCESS_FILE).unlink(missing_ok=True)
    return ModelFolder(folder.path, info)
