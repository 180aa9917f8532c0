"""What every command shares: the consoles, the error handling, and progress bars."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from ..errors import BratsxError

#: Width of tables written to a file or pipe (Rich would use 80 columns and truncate them); a
#: terminal, or ``COLUMNS`` when set, keeps its own width.
PIPE_WIDTH = 200


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if piped else None)


console = _console()
err_console = _console(stderr=True)

#: Exit code of a user error (bad input, bad option), as Click uses for usage errors.
USER_ERROR = 2

F = TypeVar("F", bound=Callable)


@dataclass
class GlobalOptions:
    """Options given before the subcommand; set by the app's callback on every invocation."""

    debug: bool = False


options = GlobalOptions()


def literal(text: object, style: str = "") -> Text:
    """Untrusted text (a case id, a path, an error message) as Rich shows it verbatim.

    ``rich.markup.escape`` stops markup only: emoji codes (``:smile:``) still turn into emoji and
    control characters reach the terminal (a newline splits a one-line message, ``ESC`` drives the
    terminal). A ``Text`` is never parsed, and its non-printable characters are written as escapes
    (``\\n``, ``\\x1b``).

    Args:
        text: anything; shown as ``str(text)``.
        style: a Rich style for the whole text, e.g. ``"red"``.

    Returns:
        The text, ready for ``console.print`` or a table cell.
    """
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
    return Text(shown, style=style)


def reports_errors(command: F) -> F:
    """Turn a :class:`BratsxError` into one red line and exit code 2 (a traceback with ``--debug``)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BratsxError as error:
            if options.debug:
                raise
            err_console.print(Text.assemble(("error:", "bold red"), " ", literal(error)), soft_wrap=True)
            raise typer.Exit(USER_ERROR) from None

    return wrapper


def progress_bar() -> Progress:
    """The progress display used by long-running commands."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
