"""What a widget shows in every front end: the live widget where one renders, and its view as
plain output beside it, so a saved notebook (which loses widget state) still shows the picture."""

from __future__ import annotations

from typing import Any


def widget_bundle(widget: Any, view: Any, fallback: str) -> dict[str, Any]:
    """The mime bundle for `widget`: its model id, and `view`'s HTML and text (or `fallback`)."""
    bundle: dict[str, Any] = {
        "application/vnd.jupyter.widget-view+json": {
            "version_major": 2,
            "version_minor": 0,
            "model_id": widget.model_id,
        }
    }
    if view is None:
        bundle["text/plain"] = fallback
    else:
        bundle["text/html"] = view.html()
        bundle["text/plain"] = view.text()
    return bundle


__all__ = ["widget_bundle"]
