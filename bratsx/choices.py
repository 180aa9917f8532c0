"""Choices given as text (a command-line option, a form field, a JSON file) looked up in their str enum: the
one place that parses them, with one error shape that suggests the nearest valid name (as MONAI's
``look_up_option``): ``unknown backend 'ortt' (did you mean 'ort'?); choose one of auto, ort, ...``.
"""

from __future__ import annotations

import difflib
from enum import Enum
from typing import TypeVar

from .errors import BratsxError

__all__ = ["look_up"]

E = TypeVar("E", bound=Enum)


def look_up(choices: type[E], value: E | str, what: str) -> E:
    """``value`` as a member of the str enum ``choices``.

    Args:
        choices: the enum (its values are the valid names).
        value: a member, or its value as text (case-insensitive).
        what: what is being chosen, for the message (``backend``, ``label convention``).

    Raises:
        BratsxError: ``value`` names no member; the message suggests the nearest name and lists all.
    """
    if isinstance(value, choices):
        return value
    names = [str(member.value) for member in choices]
    text = str(value).strip().lower()
    for member in choices:
        if str(member.value).lower() == text:
            return member
    nearest = difflib.get_close_matches(text, names, n=1)
    hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
    raise BratsxError(f"unknown {what} {value!r}{hint}; choose one of {', '.join(names)}")
