"""Runs magic lines in a fresh IPython shell and prints, as JSON, what a user saw and kept.

A process of its own because `huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at
import: the test process has long imported it offline. Usage: python -m tests.hub_session LINE...
"""

from __future__ import annotations

import json
import sys
import time

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from tests.helpers import magics, run, shown_text


def main(lines: list[str]) -> None:
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "llm_magics")
    seen = []
    for line in lines:
        result, captured = run(shell, line)
        error = result.error_in_exec
        seen.append(
            {
                "line": line,
                "ok": result.success,
                "error": type(error).__name__ if error else None,
                "message": str(error) if error else None,
                "shown": shown_text(captured) + captured.stderr,
                "registry": sorted(magics(shell).registry.names()),
                "ended_at": time.time(),
            }
        )
    print("\n" + json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
