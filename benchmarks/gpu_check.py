"""The GPU check: drives the magics in a real IPython shell on CUDA and writes gpu_check.json.

On the lent machine (no network) run it with the wheels `make gpu-wheels` prepares; on a CPU it
runs with tiny sizes and says, per section, what it skipped because it needs CUDA.
`--write-results JSON` writes the GPU section of benchmarks/RESULTS.md from a fetched JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS  # noqa: E402

START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"
NEEDS_CUDA = "skipped: needs CUDA"
NOT_BUILT = "skipped: not built yet in this check"
TINY = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
ONE_B = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
)


def build_model(folder: Path, tokenizer_dir: Path, shape: dict[str, int], device: str) -> Path:
    """A random-weight Llama built in place (on the GPU there) with the travelling tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **shape,
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def compute_dtype() -> dict:
    """The rule that picks the compute dtype, on this machine's hardware and on a T4's capability."""
    from llm_magics.engines.transformers.hardware import Hardware, choose_compute_dtype, detect_hardware

    here = detect_hardware()
    t4 = Hardware("cuda", cuda_capability=(7, 5), cuda_name="Tesla T4 (capability given)")
    return {
        "this machine": {"capability": here.cuda_capability, "chosen": choose_compute_dtype(here)},
        "T4 rule": {"capability": t4.cuda_capability, "chosen": choose_compute_dtype(t4)},
    }


def chat_equals_generate(shell, folder: Path, options: str) -> dict:
    """Greedy `%%llm_chat` against apply_chat_template + generate, same model, same tokens."""
    import llm_magics
    from benchmarks.bench_chat import _bare_turn, _magic_turn

    shell.run_line_magic("llm_load", f"{folder} --as check {options}")
    try:
        model, tokenizer = llm_magics.get_model("check")
        prompt = "Write a long story about a dragon who learns to cook."
        bare = _bare_turn(model, tokenizer, [{"role": "user", "content": prompt}], 24)
        _magic_turn(shell, prompt, "--new --temperature 0 --max-new-tokens 24")
        magic = shell.user_ns["_llm_reply"].strip()
        expected = tokenizer.decode(bare.new_ids, skip_special_tokens=True).strip()
        return {"options": options, "same reply": magic == expected, "new tokens": len(bare.new_ids)}
    finally:
        shell.run_line_magic("llm_unload", "check")


def footprint(
    shell, folder: Path, modes: tuple[str, ...] = ("--dtype bfloat16", "--quant 8bit", "--quant 4bit")
) -> dict:
    """Each mode's footprint (the card's; CUDA memory too on a GPU) beside `--estimate` and bfloat16."""
    import torch

    from llm_magics.engines.transformers.memory import estimate_memory
    from llm_magics.engines.transformers.plan import plan_load, plan_mode
    from llm_magics.engines.transformers.source import resolve_source

    rows: dict[str, dict] = {}
    for options in modes:
        flag, value = options.split()
        plan = plan_load(
            resolve_source(str(folder)),
            quantization=value if flag == "--quant" else "none",
            dtype=value if flag == "--dtype" else "auto",
        )
        estimate = estimate_memory(plan).bytes_for(plan_mode(plan))
        cuda = torch.cuda.is_available()
        before = torch.cuda.memory_allocated() if cuda else 0
        shell.run_line_magic("llm_load", f"{folder} --as check {options}")
        try:
            card = shell.magics_manager.registry["LlmMagics"].registry.get("check").describe().footprint_bytes
            measured = torch.cuda.memory_allocated() - before if cuda else card
        finally:
            shell.run_line_magic("llm_unload", "check")
        rows[options] = {
            "cuda bytes" if cuda else "card bytes": measured,
            "estimate": estimate,
            "estimate error %": 100 * (estimate - measured) / measured,
        }
    base = next(iter(rows.values()))
    for row in rows.values():
        row["vs bfloat16"] = next(v for k, v in row.items() if k.endswith("bytes")) / next(
            v for k, v in base.items() if k.endswith("bytes")
        )
    if not torch.cuda.is_available():
        rows["cuda memory"] = {"skipped": NEEDS_CUDA}
    return rows


def unload_cycles(shell, folder: Path, cycles: int = 5) -> dict:
    """CUDA memory before, after each load and after each `%llm_unload`, over several cycles."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": NEEDS_CUDA}
    before = torch.cuda.memory_allocated()
    rows = []
    for _ in range(cycles):
        shell.run_line_magic("llm_load", f"{folder} --as check")
        loaded = torch.cuda.memory_allocated()
        shell.run_line_magic("llm_unload", "check")
        rows.append({"loaded": loaded, "after unload": torch.cuda.memory_allocated()})
    within = all(abs(r["after unload"] - before) <= 0.01 * (r["loaded"] - before) for r in rows)
    return {"before": before, "cycles": rows, "within 1%": within}


def run_check(tokenizer_dir: Path, tiny: bool) -> dict:
    import torch
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from benchmarks.common import machine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llm_magics")
    result: dict = {"machine": machine(), "device": device, "sections": {}}
    sections = result["sections"]
    with tempfile.TemporaryDirectory() as work:
        folder = build_model(Path(work) / "llama", tokenizer_dir, TINY if tiny else ONE_B, device)
        sections["compute dtype"] = compute_dtype()
        with capture_output():
            sections["chat equals generate"] = [
                chat_equals_generate(
                    shell, folder, "--dtype bfloat16" if device == "cuda" else "--dtype float32"
                ),
                chat_equals_generate(shell, folder, "--quant 4bit"),
            ]
            sections["footprint vs estimate"] = footprint(shell, folder)
            sections["unload gives memory back"] = unload_cycles(shell, folder)
    for name in (
        "decode speed",
        "time to first token",
        "interrupt",
        "next and probs",
    ):
        sections[name] = {"skipped": NOT_BUILT}
    return result


def section_markdown(result: dict) -> str:
    """The GPU section of RESULTS.md, from a check's JSON."""
    lines = [
        "## GPU",
        "",
        f"From `benchmarks/gpu_check.py` on {result['machine']['gpu']} ({result['device']}).",
        "",
    ]
    if result["device"] != "cuda":
        lines += ["No figure here comes from a GPU: this run was on a CPU.", ""]
    for name, value in result["sections"].items():
        lines.append(f"- {name}: `{json.dumps(value)}`")
    return "\n".join(lines) + "\n"


def write_results(section: str, path: Path = RESULTS) -> None:
    """Replace only the text between the GPU markers, atomically."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(f"{head}{START}\n{section}{END}{tail}", encoding="utf-8")
    os.replace(temporary, path)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "build" / "gpu_check")))
    parser.add_argument("--tokenizer", type=Path, default=ROOT / ".gpu-wheels" / "tokenizer")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test)")
    parser.add_argument("--write-results", type=Path, metavar="JSON")
    args = parser.parse_args(argv)
    if args.write_results:
        write_results(section_markdown(json.loads(args.write_results.read_text())))
        return
    started = time.perf_counter()
    result = run_check(args.tokenizer, args.tiny)
    result["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (args.out / "gpu_section.md").write_text(section_markdown(result))
    print(f"wrote {args.out / 'gpu_check.json'} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
