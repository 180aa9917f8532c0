"""``bratsx prepare``: raw scans (DICOM or NIfTI, unregistered, skull on) to BraTS-ready cases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..labels import Modality
from ..prepare.atlas import Atlas
from ..prepare.pipeline import PrepareOptions
from ..prepare.skullstrip import SkullStripper, parse_skull_strip
from .common import USER_ERROR, console, err_console, literal, reports_errors
from .options import default_of


def _table(result) -> Table:
    table = Table(title=Text.assemble("sequences of ", literal(result.case_id)))
    for column in ("series", "sequence", "confidence", "evidence", "used"):
        table.add_column(column)
    for verdict in result.verdicts:
        used = result.record is not None and any(
            verdict.series.key == s["key"] for s in result.record["sequences"].values())
        evidence = verdict.excluded and f"excluded: {verdict.excluded}" or "; ".join(verdict.evidence)
        table.add_row(literal(verdict.series.label), verdict.sequence.value if verdict.sequence else "-",
                      f"{verdict.confidence:.2f}", literal(evidence), "yes" if used else "")
    return table


def _cut_off(record: dict) -> str:
    check = record.get("mask_check")
    return f", {check['cut_off_ml']:.1f} mL lesion-like tissue cut off" if check else ""


@reports_errors
def prepare(
    input_path: Annotated[Path, typer.Argument(
        metavar="INPUT", help="Folder of DICOM files (any nesting; one case per study) or of NIfTI files per "
                              "sequence (one case per folder).", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Argument(
        metavar="OUT", help="Output root: OUT/<case id>/ in the BraTS 2018 layout, atlas space, with prepare/ "
                            "(record, transforms, mask, pictures).", file_okay=False)],
    atlas: Annotated[Atlas, typer.Option(case_sensitive=False, help="Target space: sri24 is the BraTS grid "
                                         "(240x240x155, L,P,S); mni152 the ICBM 2009a template's grid.")]
    = Atlas.SRI24,
    skull_strip: Annotated[str, typer.Option(
        "--skull-strip", metavar="deepbet|none|synthstrip:PATH",
        help="deepbet: its bundled networks on ONNX Runtime (exported once into --cache-dir); synthstrip:PATH: "
             "SynthStrip with weights you have (exported once to ONNX; needs torch the first time); none: the "
             "inputs are already skull-stripped.")] = SkullStripper.DEEPBET.value,
    reference: Annotated[Modality, typer.Option(case_sensitive=False, help="The sequence the others are "
                                                "registered to.")] = Modality.T1CE,
    mapping: Annotated[Optional[list[str]], typer.Option(
        "--map", help="Override identification: SERIES_OR_FILE=SEQUENCE (series number, UID, description or "
                      "file name); comma-separate or repeat.", show_default=False)] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where deepbet's ONNX export is kept. [default: "
                                                      "~/.cache/bratsx/skullstrip]", show_default=False)] = None,
    pictures: Annotated[bool, typer.Option(help="Draw overlay pictures (needs Pillow).")] = True,
    max_cut_off_ml: Annotated[float, typer.Option(
        min=0, help="Tumour cut-off check: the lesion-like tissue (mL) the skull stripper's mask may leave just "
                    "outside it, continuing lesion-like tissue inside, before the case stops (FLAIR bright, T1 not).")]
    = default_of(PrepareOptions, "max_cut_off_ml"),
) -> None:
    """Identify, co-register, skull-strip and resample raw scans onto the atlas, one case per study or folder.

    A case with a missing or doubled sequence, an implausible brain mask (its volume, or tumour cut off)
    or a registration that made its metric worse stops with one line and writes nothing; the other cases
    go on, and the command exits with code 2 when any case failed.
    """
    from ..prepare import parse_sequence_map, prepare_input

    options = PrepareOptions(atlas=atlas, skull_strip=parse_skull_strip(skull_strip), reference=reference,
                             mapping=parse_sequence_map(mapping or []), cache=cache_dir, pictures=pictures,
                             max_cut_off_ml=max_cut_off_ml)

    def show(result) -> None:
        if result.verdicts:
            console.print(_table(result))
        if result.error:
            err_console.print(Text.assemble(("error:", "bold red"), " ", literal(result.error)), soft_wrap=True)
            return
        seconds = result.record["seconds"]
        console.print(Text.assemble("prepared ", literal(result.case_id), " -> ", literal(result.folder), (
            f" in {result.record['seconds_total']:.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items())
            + f"); brain {result.record['brain_ml']:.0f} mL" + _cut_off(result.record))))

    results = prepare_input(input_path, out, options, on_case=show)
    failed = [r for r in results if r.error]
    console.print(f"{len(results) - len(failed)} of {len(results)} case(s) prepared into {out}")
    if failed:
        raise typer.Exit(USER_ERROR)

