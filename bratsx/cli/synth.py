"""``bratsx synth``: synthetic BraTS-like cases in any of the BraTS file layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..cases import Layout
from ..synth import BRATS_SHAPE, write_synthetic_dataset
from .common import console, progress_bar, reports_errors


@reports_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the cases into (created if needed).", file_okay=False)],
    cases: Annotated[int, typer.Option("--cases", "-n", min=1, help="Number of cases.")] = 4,
    shape: Annotated[
        tuple[int, int, int], typer.Option(help="Volume shape X Y Z in voxels (1 mm each).")
    ] = BRATS_SHAPE,
    layout: Annotated[
        Layout, typer.Option(case_sensitive=False, help="File layout and label convention to write.")
    ] = Layout.BRATS2020,
    seed: Annotated[int, typer.Option(help="Random seed; case i is the same for the same seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace cases of the same ids already in OUT.")] = False,
) -> None:
    """Generate synthetic BraTS-like cases with tumour labels.

    Each case is a brain with white and grey matter and CSF, and a tumour (necrotic core, enhancing
    rim, edema) with BraTS-like contrasts on FLAIR, T1, T1ce and T2, a bias field and noise, stored
    as int16 with the LPS affine of BraTS volumes. Use them to try every command without real data.
    """
    with progress_bar() as progress:
        task = progress.add_task("synthesising", total=cases)
        written = write_synthetic_dataset(
            out, cases, tuple(shape), layout, seed, overwrite, on_case=lambda _: progress.advance(task)
        )
    console.print(f"wrote {len(written)} {layout.value} case(s) of shape {tuple(shape)} to [bold]{out}[/]")
