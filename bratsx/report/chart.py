"""Line charts drawn with Pillow (no plotting library needed at inference time): a run's curves."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["Series", "line_chart", "run_curves"]

_SIZE = (520, 320)
_MARGIN = (56, 30, 16, 40)  # left, top, right, bottom
_AXIS, _GRID, _TEXT = (90, 90, 90), (228, 228, 228), (40, 40, 40)
#: Colour of each validation curve (the regions as in bratsx's training curves, the mean in black).
_DICE_COLORS = {"WT": (44, 160, 44), "TC": (255, 127, 14), "ET": (214, 39, 40), "mean": (0, 0, 0)}
_LOSS_COLOR = (31, 119, 180)


@dataclass(frozen=True)
class Series:
    """One line: its legend name, points and colour; ``markers`` draws a dot on each point."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: tuple[int, int, int]
    markers: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(int(math.ceil((high - first) / step)) + 1)]


def line_chart(series: Sequence[Series], title: str, x_label: str, y_label: str,
               y_range: tuple[float, float] | None = None, legend_top: bool = False) -> Image.Image:
    """A chart of lines with axes, grid, ticks and a legend (RGB image).

    Args:
        series: the lines (a series without points is left out).
        title: drawn above the plot.
        x_label: the horizontal axis' name.
        y_label: the vertical axis' name.
        y_range: fixed vertical range; by default the data's, rounded out to ticks.
        legend_top: legend in the upper right corner (for falling curves) instead of the lower right.

    Returns:
        The chart.
    """
    font = ImageFont.load_default(size=12)
    image = Image.new("RGB", _SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = _MARGIN[0], _MARGIN[1], _SIZE[0] - _MARGIN[2], _SIZE[1] - _MARGIN[3]
    drawn = [s for s in series if len(s.x)]
    xs = [v for s in drawn for v in s.x] or [0.0, 1.0]
    ys = [v for s in drawn for v in s.y] or [0.0, 1.0]
    x_ticks = _ticks(min(xs), max(xs))
    y_ticks = _ticks(*(y_range or (min(ys), max(ys))))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for tick in y_ticks:
        _, y = at(x0, tick)
        draw.line((left, y, right, y), fill=_GRID)
        draw.text((left - 4, y), f"{tick:g}", font=font, fill=_TEXT, anchor="rm")
    for tick in x_ticks:
        x, _ = at(tick, y0)
        draw.line((x, top, x, bottom), fill=_GRID)
        draw.text((x, bottom + 4), f"{tick:g}", font=font, fill=_TEXT, anchor="mt")
    draw.rectangle((left, top, right, bottom), outline=_AXIS)
    for s in drawn:
        points = [at(x, y) for x, y in zip(s.x, s.y)]
        if len(points) > 1:
            draw.line(points, fill=s.color, width=2)
        if s.markers or len(points) == 1:
            for x, y in points:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=s.color)
    draw.text((_SIZE[0] / 2, 8), title, font=font, fill=_TEXT, anchor="mt")
    draw.text(((left + right) / 2, _SIZE[1] - 6), x_label, font=font, fill=_TEXT, anchor="mb")
    label = Image.new("RGB", (bottom - top, 16), (255, 255, 255))
    ImageDraw.Draw(label).text(((bottom - top) / 2, 8), y_label, font=font, fill=_TEXT, anchor="mm")
    image.paste(label.rotate(90, expand=True), (2, top))
    for i, s in enumerate(drawn):
        y = top + 12 + 15 * i if legend_top else bottom - 12 - 15 * (len(drawn) - 1 - i)
        draw.line((right - 96, y, right - 78, y), fill=s.color, width=2)
        draw.text((right - 72, y), s.name, font=font, fill=_TEXT, anchor="lm")
    return image


def run_curves(records: Sequence[Mapping[str, Any]]) -> Image.Image:
    """A training run's loss and validation Dice per epoch, side by side (from ``metrics.jsonl`` records)."""
    def points(key: str) -> tuple[list[float], list[float]]:
        kept = [r for r in records if isinstance(r.get(key), (int, float)) and isinstance(r.get("epoch"), (int, float))]
        return [float(r["epoch"]) for r in kept], [float(r[key]) for r in kept]

    loss = line_chart([Series("train loss", *points("train_loss"), _LOSS_COLOR)], "training loss", "epoch", "loss",
                      legend_top=True)
    dice = line_chart([Series(name, *points(f"val_dice_{name}"), color, markers=True)
                       for name, color in _DICE_COLORS.items()], "validation Dice", "epoch", "Dice", (0.0, 1.0))
    both = Image.new("RGB", (loss.width + dice.width, loss.height), (255, 255, 255))
    both.paste(loss, (0, 0))
    both.paste(dice, (loss.width, 0))
    return both
