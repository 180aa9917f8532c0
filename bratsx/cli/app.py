"""The ``bratsx`` command: global options and the list of subcommands."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import (
    bench,
    cases,
    cv,
    demo,
    evaluate,
    export,
    import_models,
    infer,
    models,
    postprocess,
    prepare,
    report,
    serve,
    summarize,
    synth,
    train,
)
from .common import options

app = typer.Typer(
    name="bratsx",
    help="Brain-tumour segmentation on multimodal MRI (BraTS): train, export, infer, benchmark.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals can hold patient paths
    rich_markup_mode=None,  # help text is shown as written: "[default: ...]" is not markup to drop
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("demo")(demo.demo)
app.command("synth")(synth.synth)
app.command("cases")(cases.cases)
app.command("train")(train.train)
app.command("export")(export.export)
app.command("infer")(infer.infer)
app.command("prepare")(prepare.prepare)
app.command("models")(models.models)
app.command("evaluate")(evaluate.evaluate)
app.command("bench")(bench.bench)
app.command("report")(report.report)
app.command("serve")(serve.serve)
app.command("summarize")(summarize.summarize)
app.add_typer(postprocess.app, name="postprocess")
app.add_typer(cv.app, name="cv")
app.add_typer(import_models.app, name="import")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"bratsx {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """Brain-tumour segmentation on multimodal MRI (BraTS)."""
    options.debug = debug


def main() -> None:
    """Console-script entry point."""
    app()
