"""Atomic file writes: a file is either absent, the old version, or complete, never partial.

Everything bratsx writes (segmentations, checkpoints, model files, JSON) goes through
:func:`atomic_path`: the content is written to a hidden temporary file in the same folder and
renamed over the target only once complete (``os.replace`` is atomic on POSIX filesystems).

Temporary names are short and bratsx's own, ``.bratsx-tmp-<16 hex digits>`` plus the suffix the
writer needs (``.nii.gz``): never longer than the 255 bytes a file name may have, whatever the
length of the final name (a case id of 240 bytes included), and recognisable, so that
:func:`remove_stale_temporaries` can delete what a killed process left without touching anything else.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TEMPORARY_PREFIX", "atomic_folder", "atomic_path", "remove_stale_temporaries", "write_bytes_atomic"]

#: How every temporary file or folder bratsx writes begins.
TEMPORARY_PREFIX = ".bratsx-tmp-"
#: Longest file name (bytes) that common file systems (ext4, XFS, APFS, NTFS) allow.
NAME_MAX = 255
_TEMPORARY_NAME = re.compile(re.escape(TEMPORARY_PREFIX) + r"[0-9a-f]{16}(\..*)?", re.DOTALL)
#: How earlier versions of bratsx named their temporaries: ``.<final name>.<8 hex digits>.partial[suffix]``.
_OLD_TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.partial(\..*)?", re.DOTALL)


def _temporary(folder: Path, suffix: str = "") -> Path:
    """A fresh temporary name in ``folder`` keeping ``suffix``.

    Raises:
        ValueError: the suffix is so long that the name would exceed :data:`NAME_MAX` bytes.
    """
    name = f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}{suffix}"
    if len(name.encode()) > NAME_MAX:
        raise ValueError(f"suffix {suffix!r} too long for a temporary file name")
    return folder / name


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    Args:
        path: the final file.
        suffix: ending the temporary name must keep (e.g. ``.nii.gz``, which decides compression).
    """
    path = Path(path)
    temporary = _temporary(path.parent, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: Path | str) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces the folder ``path`` (if any)."""
    path = Path(path)
    staging = _temporary(path.parent)
    staging.mkdir(parents=True)
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def remove_stale_temporaries(folder: Path | str, min_age_s: float = 60.0) -> list[Path]:
    """Delete the temporary files and folders that writes killed midway left in ``folder``.

    Only names of bratsx's own making are touched (see the module docstring, and the
    ``.<name>.<8 hex>.partial`` names of earlier versions), and only those whose own modification
    time is at least ``min_age_s`` seconds old: a file being written keeps its time fresh, so another
    bratsx process writing into the same folder (another shard of one batch) does not lose its file.

    Args:
        folder: where to look (not recursively); a missing folder has nothing to remove.
        min_age_s: how long a temporary must have been left untouched.

    Returns:
        The paths removed.

    Raises:
        OSError: a stale temporary cannot be removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    now = time.time()
    for entry in sorted(folder.iterdir()):
        if not (_TEMPORARY_NAME.fullmatch(entry.name) or _OLD_TEMPORARY_NAME.fullmatch(entry.name)):
            continue
        try:
            if now - entry.lstat().st_mtime < min_age_s:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # its writer finished (or cleaned up) meanwhile
            continue
        removed.append(entry)
    return removed
