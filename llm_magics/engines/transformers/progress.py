"""transformers' tqdm bars routed into our one status line (a saved notebook keeps no stale widget)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ... import hub

Progress = hub.Progress


def no_progress(stage: str, fraction: float | None = None, detail: str = "") -> None:
    pass


class _BarToProgress(hub.BarStandIn):
    """Stands in for the tqdm bars transformers draws while loading, and reports to `progress`.

    tqdm's notebook bars are widgets: a saved notebook keeps a stale "0%" in their place. Our
    status line is ordinary output that the summary card replaces once the load is done.
    """

    def __init__(self, progress: Progress, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
        self.progress = progress
        self.iterable = iterable
        total = kwargs.get("total")
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.stage = str(kwargs.get("desc") or "working").rstrip(". ").lower()
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update()

    def update(self, count: int = 1) -> None:
        self.n += count
        self.progress(self.stage, self.n / self.total if self.total else None)


@contextlib.contextmanager
def bars_to(progress: Progress, stage: str = "loading weights") -> Iterator[None]:
    """Route transformers' progress bars (weights, GGUF conversion, saving) into `progress`.

    `set_tqdm_hook` arrived in transformers 5.4. Before it, bars cannot be redirected, only turned
    off: the user then sees `stage` without a fraction, and no widget bar is left in the notebook.
    """
    from transformers import modeling_gguf_pytorch_utils
    from transformers.utils import logging as hf_logging

    def make_bar(*args: Any, **kwargs: Any) -> _BarToProgress:
        return _BarToProgress(progress, *args, **kwargs)

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if set_hook is not None:
        previous = set_hook(lambda factory, args, kwargs: make_bar(*args, **kwargs))
    else:
        progress(stage)
        hf_logging.disable_progress_bar()
    # The GGUF reader draws its bar with tqdm.auto directly, past the hook: swap its module global.
    gguf_tqdm = getattr(modeling_gguf_pytorch_utils, "tqdm", None)
    if gguf_tqdm is not None:
        modeling_gguf_pytorch_utils.tqdm = make_bar
    try:
        yield
    finally:
        if set_hook is not None:
            set_hook(previous)
        elif bars_were_on:
            hf_logging.enable_progress_bar()
        if gguf_tqdm is not None:
            modeling_gguf_pytorch_utils.tqdm = gguf_tqdm
