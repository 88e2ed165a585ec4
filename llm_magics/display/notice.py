"""One-line messages (info, warning, success) and a status line that updates in place."""

from __future__ import annotations

import html
import time
from enum import Enum
from typing import Any


class NoticeKind(Enum):
    """What a notice says, which sets its colour."""

    INFO = "#1f6feb"
    SUCCESS = "#1a7f37"
    WARNING = "#9a6700"


class Notice:
    """A short message: a coloured line in notebooks, plain text in terminals and logs."""

    def __init__(self, text: str, kind: NoticeKind = NoticeKind.INFO) -> None:
        self.text = text
        self.kind = kind

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        colour = self.kind.value
        return {
            "text/plain": self.text,
            "text/html": (
                f'<div style="border-left:3px solid {colour};padding:2px 8px;margin:2px 0;'
                f'font-family:system-ui,sans-serif;font-size:13px">{html.escape(self.text)}</div>'
            ),
        }

    def __repr__(self) -> str:
        return self.text


def is_rich(shell: Any) -> bool:
    """Whether the front end shows HTML (notebooks); terminal IPython only shows text/plain."""
    formatter = getattr(shell, "display_formatter", None)
    return formatter is not None and "text/html" in formatter.active_types


class Progress:
    """A stage and, when known, how far along it is: a bar in notebooks, a percentage in text."""

    def __init__(self, text: str, fraction: float | None = None) -> None:
        self.text = text
        self.fraction = fraction

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        if self.fraction is None:
            return Notice(self.text)._repr_mimebundle_()
        percent = round(100 * min(max(self.fraction, 0.0), 1.0))
        bar = (
            '<div style="display:inline-block;width:160px;height:8px;background:#e5e7eb;border-radius:4px;'
            f'margin-left:8px;vertical-align:middle"><div style="width:{percent}%;height:8px;'
            'background:#1f6feb;border-radius:4px"></div></div>'
        )
        html_text = Notice(f"{self.text} {percent}%")._repr_mimebundle_()["text/html"]
        return {
            "text/plain": f"{self.text} {percent}%",
            "text/html": html_text.replace("</div>", bar + "</div>", 1),
        }


class StatusLine:
    """A status updated in place while work runs (a display handle), with a bar when the stage
    reports how far along it is. A terminal cannot redraw an earlier output, so there each new
    stage is printed once and fractions are left out."""

    def __init__(self, prefix: str, rich: bool | None = None) -> None:
        self.prefix = prefix
        self.rich = rich
        self._handle: Any = None
        self._shown: tuple[str, int | None, str] | None = None
        self._shown_at = 0.0

    def update(self, text: str, fraction: float | None = None, detail: str = "") -> None:
        """Show `text` (a stage); `detail` (MB done, rate) changes within it and, like the bar,
        is left out in a terminal, where each stage is printed once."""
        from IPython import get_ipython
        from IPython.display import display

        if self.rich is None:
            self.rich = is_rich(get_ipython())
        if not self.rich:
            fraction, detail = None, ""
        # A new stage shows at once; within a stage the bar moves at most ten times a second.
        key = (text, None if fraction is None else int(100 * fraction), detail)
        now = time.monotonic()
        if key == self._shown or (
            self._shown is not None
            and text == self._shown[0]
            and fraction != 1.0
            and now - self._shown_at < 0.1
        ):
            return
        self._shown, self._shown_at = key, now
        status = Progress(f"{self.prefix}: {text}" + (f" · {detail}" if detail else ""), fraction)
        if self._handle is None:
            self._handle = display(status, display_id=True)
        else:
            self._handle.update(status)

    def clear(self) -> None:
        """Blank the status line, so that a failed load ends with its error alone."""
        if self._handle is not None:
            self._handle.update({"text/plain": ""}, raw=True)
            self._handle = None

    def replace_with(self, obj: Any) -> None:
        """End with a final object in the status line's place (or below it, when none was shown)."""
        from IPython.display import display

        if self._handle is None:
            display(obj)
        else:
            self._handle.update(obj)
