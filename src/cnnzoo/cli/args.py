"""Parsing of option values shared by several commands."""

from __future__ import annotations

import math
import re

from cnnzoo.errors import UserError


def parse_shape(text: str | None, option: str = "--input-shape") -> tuple[int, ...] | None:
    """'64,64,3' or '64x64x3' -> (64, 64, 3)."""
    if text is None:
        return None
    parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UserError(
            f"{option} must be three positive integers such as 64,64,3. Received: {text!r}"
        )
    return tuple(int(p) for p in parts)


def positive(value: float, option: str) -> float:
    """A finite number above 0, or a UserError naming the option (typer lets nan and inf through)."""
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{option} must be a positive number. Received: {option} {value}")
    return value


def megapixels(value: float, option: str = "--max-megapixels") -> int:
    """Millions of pixels -> a pixel count, refused unless finite and positive."""
    return max(1, round(positive(value, option) * 1_000_000))


MAX_MEGAPIXELS_HELP = "Largest image decoded, in millions of pixels (width x height, read from its header first)."
