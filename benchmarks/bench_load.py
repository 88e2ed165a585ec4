"""Goal 4: load times. First load of the bundled default (converts the GGUF), a cached load in a
fresh process, a repeated `%llm_load` of a loaded name, and the by-hand GGUF load for comparison.

Each load runs in a new interpreter, as in a new kernel. Importing torch and transformers (with
`transformers.modeling_utils`, the base of every model class) is timed apart: every workflow
pays it once per kernel, whatever loads the model.
"""

from __future__ import annotations

import shutil
import tempfile

from benchmarks.common import Section, Spread, fresh_process

_MAGIC_LOAD = """
import json, os, time
os.environ["LLM_MAGICS_CACHE_DIR"] = {cache!r}
started = time.perf_counter()
import torch, transformers, transformers.modeling_utils
from transformers import AutoModelForCausalLM, AutoTokenizer
imports = time.perf_counter() - started
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "llm_magics")
with capture_output():
    started = time.perf_counter(); ip.run_line_magic("llm_load", ""); first = time.perf_counter() - started
    again = []
    for _ in range(5):
        started = time.perf_counter(); ip.run_line_magic("llm_load", ""); again.append(time.perf_counter() - started)
print(json.dumps({{"imports": imports, "load": first, "again": again}}))
"""

_BY_HAND = """
import json, time
started = time.perf_counter()
import torch, transformers, transformers.modeling_utils
from transformers import AutoModelForCausalLM, AutoTokenizer
imports = time.perf_counter() - started
from llm_magics.engines.transformers.source import bundled_gguf_path
gguf = bundled_gguf_path()
started = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
print(json.dumps({"imports": imports, "load": time.perf_counter() - started}))
"""


def run(runs: int = 3) -> Section:
    section = Section(
        "Load time (bundled SmolLM2-135M), each in a fresh process",
        ["load", "seconds (after imports)", "vs by hand", "importing torch + transformers first (all rows)"],
    )
    cache = tempfile.mkdtemp(prefix="llm_magics_bench_cache_")
    try:
        first = fresh_process(_MAGIC_LOAD.format(cache=cache))
        cached = [fresh_process(_MAGIC_LOAD.format(cache=cache)) for _ in range(runs)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    by_hand_runs = [fresh_process(_BY_HAND) for _ in range(runs)]
    by_hand = Spread([r["load"] for r in by_hand_runs])
    cached_load = Spread([c["load"] for c in cached])
    again = Spread([t for c in cached for t in c["again"]])
    imports = Spread([r["imports"] for r in by_hand_runs + cached])
    section.rows = [
        [
            "by hand: AutoTokenizer + AutoModelForCausalLM from the GGUF",
            by_hand.show(" s"),
            "1.00",
            imports.show(" s"),
        ],
        [
            "`%llm_load`, first time (converts the GGUF once)",
            f"{first['load']:.2f} s",
            f"{first['load'] / by_hand.median:.2f}",
            "same",
        ],
        ["`%llm_load`, cached", cached_load.show(" s"), f"{cached_load.median / by_hand.median:.2f}", "same"],
        [
            "`%llm_load` of a name already loaded",
            again.show(" s", digits=5),
            f"{again.median / by_hand.median:.5f}",
            "-",
        ],
    ]
    section.goals = [
        (
            f"cached load in a fresh process ≤ 2 s (median {cached_load.median:.2f} s after imports)",
            cached_load.median <= 2.0,
        ),
        (f"reload of a loaded name is instant (median {again.median * 1000:.2f} ms)", again.median < 0.01),
    ]
    section.notes = [
        f"A new kernel also spends {imports.median:.1f} s importing torch and transformers (with "
        "`transformers.modeling_utils`), once, with or without llm_magics; `%load_ext llm_magics` imports "
        "neither, so the first `%llm_load` pays it. The times after imports still include importing the "
        "model's own modeling module (Llama here), as any first load does."
    ]
    return section


if __name__ == "__main__":
    run().print()
