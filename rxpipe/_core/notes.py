"""Errors carry the name of the stage that raised them, as an exception note, added once."""

from __future__ import annotations

from typing import Final

__all__ = ("annotate",)

_NOTE_PREFIX: Final = "rxpipe: raised in stage "


def annotate(error: BaseException, stage_name: str) -> BaseException:
    """Add a note naming the stage that raised, once (the first stage is the one that did)."""
    notes = getattr(error, "__notes__", ())
    if not any(n.startswith(_NOTE_PREFIX) for n in notes):
        error.add_note(f"{_NOTE_PREFIX}{stage_name!r}")
    return error
