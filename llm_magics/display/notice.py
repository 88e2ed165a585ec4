"""One-line messages (info, warning, success) and a status line that updates in place."""

from __future__ import annotations

import html
from typing import Any

_COLOURS = {"info": "#1f6feb", "success": "#1a7f37", "warning": "#9a6700"}


class Notice:
    """A short message: a coloured line in notebooks, plain text in terminals and logs."""

    def __init__(self, text: str, kind: str = "info") -> None:
        self.text = text
        self.kind = kind

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        colour = _COLOURS.get(self.kind, _COLOURS["info"])
        return {
            "text/plain": self.text,
            "text/html": (
                f'<div style="border-left:3px solid {colour};padding:2px 8px;margin:2px 0;'
                f'font-family:system-ui,sans-serif;font-size:13px">{html.escape(self.text)}</div>'
            ),
        }

    def __repr__(self) -> str:
        return self.text


class StatusLine:
    """A line updated in place while work runs (a display handle); each update is a new line in
    a terminal, which has no way to redraw an earlier output."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._handle: Any = None

    def update(self, text: str) -> None:
        from IPython.display import display

        notice = Notice(f"{self.prefix}: {text}")
        if self._handle is None:
            self._handle = display(notice, display_id=True)
        else:
            self._handle.update(notice)

    def replace_with(self, obj: Any) -> None:
        """End with a final object in the status line's place (or below it, when none was shown)."""
        from IPython.display import display

        if self._handle is None:
            display(obj)
        else:
            self._handle.update(obj)
