"""Argparse types for numbers, checked at parse time: a bad value is argparse's one usage line naming the option,
before any work. (Every command's counts, seeds, steps and sizes use them.)"""

from __future__ import annotations

import math
from argparse import ArgumentTypeError


def integer(text: str, what: str = "an integer") -> int:
    """``int(text)``, or an ``ArgumentTypeError`` saying ``text`` is not ``what``."""
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (a count: images, epochs, a batch, steps, jobs)."""
    value = integer(text, "a positive integer")
    if value < 1:
        raise ArgumentTypeError(f"{value} is not a positive integer (give 1 or more)")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seed, a retry count, a block index)."""
    value = integer(text, "a non-negative integer")
    if value < 0:
        raise ArgumentTypeError(f"{value} is negative (give 0 or more)")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ArgumentTypeError(f"{text} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _finite(text)
    if value <= 0:
        raise ArgumentTypeError(f"{text} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _finite(text)
    if value < 0:
        raise ArgumentTypeError(f"{text} is negative (give 0 or more)")
    return value
