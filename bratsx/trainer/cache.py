"""The preprocessed-case cache: decode and preprocess each case once, then memory-map it for training.

Patch sampling reads a few MB at random places of every case, thousands of times; decompressing
gzip NIfTI on each read would dominate training. Each case is therefore loaded, reoriented,
cropped to the brain and z-scored once (:func:`bratsx.preprocessing.preprocess`, the same code the
runtime uses) and stored as uncompressed ``.npy`` arrays that every data-loader worker memory-maps.

An entry is named after a fingerprint of its source files (path, size, modification time) and of
:data:`PREPROCESSING_VERSION`, so editing a case or changing the preprocessing makes a new entry
and the stale one is removed. Entries are written under a temporary name and renamed, so an
interrupted build never leaves a half-written entry behind.

Under ``torchrun`` each process builds its share of the entries (:func:`build_cache` on a slice of
the cases) and then every process reads all of them (:func:`read_cache`), so the cache folder must be
one that every process sees.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_folder
from ..cases import Case
from ..errors import BratsxError, CaseError
from ..imageio import load_case
from ..labels import CLASS_CONVENTION, convert_labels
from ..preprocessing import DEFAULT_MARGIN, preprocess

__all__ = ["PREPROCESSING_VERSION", "CachedCase", "build_cache", "default_cache_dir", "read_cache"]

#: Bump when preprocessing changes in a way that invalidates cached arrays.
PREPROCESSING_VERSION = 1

#: Labels in the cache are network classes (tissue codes 1 NCR, 2 edema, 3 ET).
CACHE_CONVENTION = CLASS_CONVENTION


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bratsx/preprocessed``, or ``~/.cache/bratsx/preprocessed``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bratsx" / "preprocessed"


@dataclass(frozen=True)
class CachedCase:
    """One preprocessed case on disk.

    Attributes:
        case_id: the case's id.
        folder: the cache entry holding ``image.npy``, ``label.npy`` and ``meta.json``.
        spacing: voxel spacing (mm) along the canonical axes.
    """

    case_id: str
    folder: Path
    spacing: tuple[float, float, float]

    def image(self) -> np.ndarray:
        """float32 ``(4, z, y, x)`` cropped and z-scored image, memory-mapped read-only."""
        return np.load(self.folder / "image.npy", mmap_mode="r")

    def labels(self) -> np.ndarray:
        """uint8 ``(z, y, x)`` tissue labels (BraTS 2023 convention), memory-mapped read-only."""
        return np.load(self.folder / "label.npy", mmap_mode="r")

    def mask(self) -> np.ndarray:
        """Boolean brain mask of the cropped volume, memory-mapped read-only."""
        return np.load(self.folder / "mask.npy", mmap_mode="r")


def _fingerprint(case: Case, margin: int) -> str:
    digest = hashlib.sha1(f"v{PREPROCESSING_VERSION}:margin{margin}".encode())
    for path in case.files:
        stat = path.stat()
        digest.update(f"|{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    if case.stated_labels is not None:  # the same file read in another label set is another entry
        digest.update(f"|labels:{case.stated_labels.value}".encode())
    return digest.hexdigest()[:16]


def _entries_of(cache_dir: Path, case_id: str) -> list[Path]:
    """Every cache entry of one case, found by comparing names (a case id is never a glob pattern: ``?`` or
    ``[`` in an id must not match another case's entries)."""
    prefix = f"{case_id}-"
    return [p for p in cache_dir.iterdir() if p.is_dir() and p.name.startswith(prefix)
            and len(p.name) == len(prefix) + 16 and all(c in "0123456789abcdef" for c in p.name[len(prefix):])]


def _entry(cache_dir: Path, case: Case, margin: int) -> Path:
    return cache_dir / f"{case.case_id}-{_fingerprint(case, margin)}"


def _read_entry(folder: Path) -> CachedCase:
    meta = json.loads((folder / "meta.json").read_text())
    return CachedCase(meta["case_id"], folder, tuple(meta["spacing"]))


def _write_entry(case: Case, folder: Path, margin: int) -> CachedCase:
    if case.label is None:
        raise CaseError(case.case_id, "no label file: training needs labelled cases", case.folder)
    loaded = load_case(case)
    ready = preprocess(loaded.image, margin)
    labels = convert_labels(loaded.label[ready.box.slices], loaded.convention, CACHE_CONVENTION)
    with atomic_folder(folder) as staging:
        np.save(staging / "image.npy", ready.image)
        np.save(staging / "label.npy", labels)
        np.save(staging / "mask.npy", ready.mask)
        meta = {
            "case_id": case.case_id,
            "layout": case.layout.value,
            "source_files": [str(p) for p in case.files],
            "preprocessing_version": PREPROCESSING_VERSION,
            "crop_margin": margin,
            "box_start": list(ready.box.start),
            "box_stop": list(ready.box.stop),
            "full_shape": list(ready.full_shape),
            "spacing": list(loaded.geometry.canonical_spacing),
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    return _read_entry(folder)


def build_cache(
    cases: Sequence[Case],
    cache_dir: Path,
    margin: int = DEFAULT_MARGIN,
    on_case: Callable[[str, bool], None] | None = None,
) -> list[CachedCase]:
    """Make sure every case has a current cache entry; build the missing ones.

    Args:
        cases: labelled cases to cache.
        cache_dir: where entries live (shared between runs).
        margin: crop margin of the preprocessing.
        on_case: called with ``(case_id, built)`` per case; ``built`` is False for a reused entry.

    Returns:
        The cached cases, in the order given.

    Raises:
        CaseError: for a case that cannot be loaded or has no label (no entry is left for it).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = []
    for case in cases:
        folder = _entry(cache_dir, case, margin)
        built = not (folder / "meta.json").is_file()
        if built:
            for stale in _entries_of(cache_dir, case.case_id):
                if stale.name != folder.name:
                    shutil.rmtree(stale)  # an entry of the same case from older files or preprocessing
            cached.append(_write_entry(case, folder, margin))
        else:
            cached.append(_read_entry(folder))
        if on_case is not None:
            on_case(case.case_id, built)
    return cached


def read_cache(cases: Sequence[Case], cache_dir: Path, margin: int = DEFAULT_MARGIN) -> list[CachedCase]:
    """The current cache entries of ``cases``, built by this or another process; nothing is built.

    Raises:
        BratsxError: a case has no current entry in ``cache_dir``.
    """
    cached = []
    for case in cases:
        folder = _entry(cache_dir, case, margin)
        if not (folder / "meta.json").is_file():
            raise BratsxError(
                f"{cache_dir}: no current cache entry for case {case.case_id}, which another training process "
                "built; --cache-dir must be a folder every process sees (a shared filesystem across nodes)"
            )
        cached.append(_read_entry(folder))
    return cached
