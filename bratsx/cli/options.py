"""Option plumbing every command shares: defaults read from the library's option dataclasses (each default
is written once, in the dataclass), the workspace option, and the one axis order for spatial sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..labels import LabelConvention

__all__ = ["LabelsOption", "WorkspaceOption", "default_of", "shown_default", "xyz_to_canonical"]

WorkspaceOption = Annotated[Optional[Path], typer.Option(
    "--workspace", "-w", help="Workspace folder for runs/ and models/. [default: $BRATSX_HOME, else the current "
                              "folder]", file_okay=False, show_default=False)]

#: ``--labels NAME`` (``--convention`` is its older name): the label set in use, one of the README's table.
LabelsOption = Annotated[Optional[LabelConvention], typer.Option(
    "--labels", "--convention", case_sensitive=False,
    help="Label set: brats2020 (2018-2021), brats2023 (glioma), brats2024 (post-treatment glioma, RC 4), "
         "brats-men, brats-met, brats-ped2023, brats-ped2024, msd. [default: stated by the layout, case id or "
         "dataset.json, else read from the values where they are unambiguous]", show_default=False)]


def default_of(options: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``options``."""
    for item in dataclasses.fields(options):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
    raise KeyError(f"{options.__name__} has no field {name!r} with a default")


def shown_default(options: type, name: str) -> str:
    """How ``--help`` shows that default (sizes in X Y Z order, sequences comma-separated)."""
    value = default_of(options, name)
    if value is None:
        return "none"
    if isinstance(value, tuple) and name in ("patch", "shape"):
        return " ".join(str(v) for v in reversed(value))
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(getattr(value, "value", value))


def xyz_to_canonical(size: tuple[int, int, int]) -> tuple[int, int, int]:
    """A size given on the command line (X Y Z, as image viewers and NIfTI headers list it) in bratsx's
    canonical array order (Z Y X)."""
    return tuple(int(v) for v in reversed(size))
