"""Consoles that print user text literally: no `:name:` emoji codes and no highlighting (a row's `1:x:2` must not
become an emoji); markup in user text is escaped where it is printed (`rich.markup.escape`)."""

from __future__ import annotations

from typing import Any

from rich.console import Console


def make_console(**options: Any) -> Console:
    return Console(emoji=False, highlight=False, **options)
