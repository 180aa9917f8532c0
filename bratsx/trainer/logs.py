"""What a run leaves to read: ``metrics.jsonl``, ``training_curves.png`` and TensorBoard events."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, write_bytes_atomic
from ..extras import optional_module

__all__ = ["RunLog", "write_json_atomic"]

logger = logging.getLogger(__name__)


class RunLog:
    """Appends one JSON record per epoch, redraws the curves, mirrors scalars to TensorBoard.

    Args:
        run_dir: the run folder.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.curves_path = run_dir / "training_curves.png"
        self._tensorboard = None
        tensorboard = optional_module("torch.utils.tensorboard")  # optional: without it, no event files
        if tensorboard is not None:
            self._tensorboard = tensorboard.SummaryWriter(str(run_dir / "tensorboard"))
        else:
            logger.debug("tensorboard not installed: no event files")

    def append(self, record: dict[str, Any]) -> None:
        """Add an epoch record to ``metrics.jsonl`` (and TensorBoard)."""
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self._tensorboard.add_scalar(key, value, record["epoch"])
            self._tensorboard.flush()

    def records(self) -> list[dict[str, Any]]:
        """Every epoch record so far."""
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """Drop records beyond ``epoch`` (written after the checkpoint a resumed run restarts from)."""
        kept = [r for r in self.records() if r["epoch"] <= epoch]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def draw_curves(self) -> Path:
        """Redraw ``training_curves.png``: training loss, and validation Dice per region."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = self.records()
        figure, (loss_axis, dice_axis) = plt.subplots(1, 2, figsize=(11, 4))
        loss_axis.plot([r["epoch"] for r in records], [r["train_loss"] for r in records], label="train loss")
        loss_axis.set_xlabel("epoch")
        loss_axis.set_ylabel("Dice + BCE loss")
        loss_axis.grid(alpha=0.3)
        validated = [r for r in records if "val_dice_mean" in r]
        for key, colour in (("WT", "tab:green"), ("TC", "tab:orange"), ("ET", "tab:red"), ("mean", "black")):
            dice_axis.plot([r["epoch"] for r in validated], [r[f"val_dice_{key}"] for r in validated],
                           marker="o", label=key, color=colour, linestyle="--" if key == "mean" else "-")
        dice_axis.set_xlabel("epoch")
        dice_axis.set_ylabel("validation Dice")
        dice_axis.set_ylim(0, 1)
        dice_axis.grid(alpha=0.3)
        dice_axis.legend(loc="lower right")
        figure.suptitle(f"{self.run_dir.parent.name}/{self.run_dir.name}")
        figure.tight_layout()
        with atomic_path(self.curves_path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=90)
        plt.close(figure)
        return self.curves_path

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON so that ``path`` is always complete."""
    write_bytes_atomic(path, (json.dumps(content, indent=2) + "\n").encode())
