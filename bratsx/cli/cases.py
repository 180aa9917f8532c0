"""``bratsx cases``: what bratsx finds in a directory, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..cases import Layout, discover
from ..imageio import CaseReport, inspect_case
from ..labels import BRATS_CHANNELS
from .common import console, literal, progress_bar, reports_errors


def _input_channels(model: Path) -> tuple[str, ...]:
    """The input channels a model folder's or ONNX file's contract names."""
    from ..contract import read_onnx_contract
    from ..modelfolder import ModelFolder

    contract = ModelFolder.read(model).contract if model.is_dir() else read_onnx_contract(model)
    return contract.modality_order


def _problems(report: CaseReport) -> str:
    """The problems of a case on one line, each after the file it is about (not the case's own folder)."""
    return "; ".join(f"{p.path.name}: {p.problem}" if p.path and p.path != report.case.folder else p.problem
                     for p in report.problems)


@reports_errors
def cases(
    directory: Annotated[
        Path, typer.Argument(help="Directory of case folders, one case folder, or an MSD dataset.", exists=True)
    ],
    layout: Annotated[
        Optional[Layout],
        typer.Option(case_sensitive=False, help="Force this layout instead of detecting it per folder."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Also read every voxel: finds corrupt data, NaNs, empty modalities, "
                                           "bad labels.")
    ] = False,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", exists=True, help=(
            "Look for this model's input channels (a model folder or .onnx file) instead of FLAIR, T1, T1ce and T2: "
            "an imported model may take fewer, or others, such as an ADC map found as <id>_adc.nii.gz."))
    ] = None,
) -> None:
    """List the cases found in DIRECTORY with their geometry and any problem.

    Layouts are detected per folder: BraTS 2018-2021 (_flair/_t1/_t1ce/_t2/_seg), BraTS 2023+
    (-t2f/-t1n/-t1c/-t2w/-seg), MSD Task01 (imagesTr/labelsTr) and plain folders
    (flair, t1, t1ce or t1c, t2). Without --check only the headers are read. Folders passed over
    (hidden, without NIfTI files, or with files of no layout) are listed after the table. Exits
    with code 1 when any case has a problem.
    """
    found = discover(directory, layout, _input_channels(model) if model else BRATS_CHANNELS)
    reports = []
    with progress_bar() as progress:
        task = progress.add_task("checking" if check else "reading headers", total=len(found.cases))
        for case in found.cases:
            reports.append(inspect_case(case, read_voxels=check))
            progress.advance(task)

    table = Table(title=literal(f"{len(found.cases)} case(s) in {directory}"))
    table.add_column("case", overflow="fold")
    for column in ("layout", "shape", "spacing (mm)", "orientation", "label"):
        table.add_column(column, no_wrap=True)
    table.add_column("problems", overflow="fold")
    for report in reports:
        geometry = report.geometry
        problems = _problems(report)
        table.add_row(
            literal(report.case.case_id),
            report.case.layout.value,
            "x".join(map(str, geometry.shape)) if geometry else "?",
            "x".join(f"{s:g}" for s in geometry.spacing) if geometry else "?",
            geometry.orientation if geometry else "?",
            "yes" if report.case.label else "no",
            literal(problems, "red") if problems else literal("ok", "green"),
        )
    console.print(table)
    for skipped in found.skipped:
        console.print(literal(f"skipped {skipped.path}: {skipped.reason}", "yellow"))
    failed = sum(1 for report in reports if report.problems)
    if failed:
        console.print(f"[red]{failed} of {len(reports)} case(s) have problems[/]")
        raise typer.Exit(1)
