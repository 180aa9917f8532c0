"""``bratsx models``: the workspace's model folders and the bundled model."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..errors import BratsxError
from .common import console, reports_errors
from .options import WorkspaceOption
from .render import per_region


@reports_errors
def models(workspace: WorkspaceOption = None) -> None:
    """List the models `bratsx infer` can use: name, source, precisions, validation Dice, patch, created.

    The default model (marked *) is what `bratsx infer` uses without --model: the workspace's last
    export, else the bundled one.
    """
    from ..workspace import Workspace, bundled_models

    space = Workspace.locate(workspace)
    try:
        default = space.default_model().folder.path.resolve()
    except BratsxError:  # no model at all: the table says so
        default = None
    table = Table(title=f"models (workspace {escape(str(space.root))})")
    for column in ("", "name", "where", "source", "files", "validation Dice WT/TC/ET", "patch", "created"):
        table.add_column(column)
    folders = [(f, "workspace") for f in space.models()] + [(f, "bundled") for f in bundled_models()]
    for folder, where in folders:
        contract = folder.contract
        source = folder.info.get("source", {})
        table.add_row("*" if folder.path.resolve() == default else "", escape(folder.name), where,
                      escape(source.get("description") or source.get("run") or ""), ", ".join(folder.precisions),
                      per_region(folder.info.get("validation_dice")),
                      "x".join(str(p) for p in reversed(contract.patch_size)), folder.info.get("created", ""))
    console.print(table if folders else "no models: train one (bratsx train DATA) and export it (bratsx export)")
