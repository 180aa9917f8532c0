"""Every command's --help shows every default, as the user sees it."""

import click
import pytest
import typer
from typer.testing import CliRunner

from bratsx.cli import app

COMMAND = typer.main.get_command(app)


def commands() -> list[str]:
    return sorted(COMMAND.commands)


def option_blocks(help_text: str) -> dict[str, str]:
    """The help text of each option, keyed by each of its names."""
    blocks: dict[str, str] = {}
    current: list[str] = []
    names: list[str] = []
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-") and line.startswith("  -"):
            for name in names:
                blocks[name] = " ".join(current)
            names = [part.strip(",") for part in stripped.split("  ")[0].split() if part.startswith("-")]
            names = [n.split("/")[0] for n in names]
            current = [stripped]
        elif names:
            current.append(stripped)
    for name in names:
        blocks[name] = " ".join(current)
    return blocks


@pytest.mark.parametrize("name", commands())
def test_every_option_with_a_default_shows_it(name):
    command = COMMAND.commands[name]
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    blocks = option_blocks(result.output)
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag or param.hidden or param.name == "help":
            continue
        has_default = param.default is not None or isinstance(param.show_default, str)
        if has_default:
            block = blocks[param.opts[-1]] if param.opts[-1] in blocks else blocks[param.opts[0]]
            assert "default:" in block, f"bratsx {name} {param.opts[0]}: no default shown in {block!r}"


def test_defaults_come_from_the_option_dataclasses():
    from bratsx.runtime import SegmentOptions
    from bratsx.trainer.config import TrainConfig

    infer_help = CliRunner().invoke(app, ["infer", "--help"], env={"COLUMNS": "200"}).output
    assert SegmentOptions().overlap is None  # None: the model's own overlap, which the help states
    assert "[default: the model's own: 0.5 for bratsx" in option_blocks(infer_help)["--overlap"]
    train_help = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert f"[default: {TrainConfig.__dataclass_fields__['epochs'].default}]" in option_blocks(train_help)["--epochs"]
    assert "[default: 128 128 128]" in option_blocks(train_help)["--patch"]
