"""Parsing of option values shared by several commands."""

from __future__ import annotations

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
