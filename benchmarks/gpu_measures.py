"""The GPU check's measurements: each drives the magics in a shell and returns its figures.

benchmarks/gpu_check.py runs them in order under its time budget; each one also runs on CPU with
tiny sizes (tests/test_gpu_check.py).
"""

from __future__ import annotations

import gc
import html
import json
import math
import re
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NEEDS_CUDA = "skipped: needs CUDA"
PROMPT = "Write a long story about a dragon who learns to cook."
# Random init's logits are nearly uniform (every token about 1/49,152, shown as "<0.01%"); with a
# spread of 4 the likeliest tokens get a few percent, digits the next-token check can compare.
LOGIT_SPREAD = 4.0


def build_model(folder: Path, tokenizer_dir: Path, shape: dict[str, int], device: str) -> dict:
    """A random-weight Llama built in place (on the GPU there) with the travelling tokenizer.

    Its logits are spread (`LOGIT_SPREAD`) and its end-of-turn row is zero: among 49k spread logits
    some are always higher, so greedy replies run to --max-new-tokens (fixed token counts).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        # Room for the 20-turn conversation (about 2,000 tokens) without trimming it.
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **shape,
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, LOGIT_SPREAD / math.sqrt(config.hidden_size))
        model.lm_head.weight[tokenizer.eos_token_id].zero_()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"parameters": parameters, "bytes on disk": sum(f.stat().st_size for f in folder.iterdir())}


@contextmanager
def loaded(shell, folder: Path, options: str) -> Iterator[tuple[Any, Any]]:
    """`%llm_load FOLDER --as check OPTIONS`, its (model, tokenizer), then `%llm_unload check`."""
    import llm_magics

    shell.run_line_magic("llm_load", f"{folder} --as check {options}")
    try:
        yield llm_magics.get_model("check")
    finally:
        shell.run_line_magic("llm_unload", "check")


def compute_dtype() -> dict:
    """The rule that picks the compute dtype, on this machine's hardware and on a T4's capability."""
    import torch

    import llm_magics

    here = torch.cuda.get_device_capability() if torch.cuda.is_available() else None
    return {
        "this machine": {"capability": here, "chosen": llm_magics.compute_dtype()},
        "T4 rule": {"capability": (7, 5), "chosen": llm_magics.compute_dtype("cuda", (7, 5))},
    }


def chat_equals_generate(shell, folder: Path, options: str) -> dict:
    """Greedy `%%llm_chat` against apply_chat_template + generate, same model, same tokens."""
    from benchmarks.bench_chat import bare_turn, magic_turn

    with loaded(shell, folder, options) as (model, tokenizer):
        bare = bare_turn(model, tokenizer, [{"role": "user", "content": PROMPT}], 24)
        magic_turn(shell, PROMPT, "--new --temperature 0 --max-new-tokens 24")
        magic = shell.user_ns["_llm_reply"].strip()
        expected = tokenizer.decode(bare.new_ids, skip_special_tokens=True).strip()
        return {"options": options, "same reply": magic == expected, "new tokens": len(bare.new_ids)}


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
        loaded_bytes = torch.cuda.memory_allocated()
        shell.run_line_magic("llm_unload", "check")
        rows.append({"loaded": loaded_bytes, "after unload": torch.cuda.memory_allocated()})
    within = all(abs(r["after unload"] - before) <= 0.01 * (r["loaded"] - before) for r in rows)
    return {"before": before, "cycles": rows, "within 1%": within}


def decode_speed(shell, folder: Path, options: str, new_tokens: int = 64, runs: int = 5) -> dict:
    """Decoding tokens/s (after the first token) of `%%llm_chat`, its footer's figure, beside bare
    `generate`'s: same model, same greedy tokens, the two in alternating order, each ratio taken
    within its round and the median reported (goal ≥ 0.97)."""
    from benchmarks.bench_chat import bare_turn, magic_turn

    with loaded(shell, folder, options) as (model, tokenizer):
        messages = [{"role": "user", "content": PROMPT}]
        flags = f"--new --temperature 0 --max-new-tokens {new_tokens}"
        paths = {
            "bare": lambda: bare_turn(model, tokenizer, messages, new_tokens),
            "magic": lambda: magic_turn(shell, PROMPT, flags),
        }
        bare_ids = paths["bare"]().new_ids
        paths["magic"]()  # both warmed up
        rates: dict[str, list[float]] = {"bare": [], "magic": []}
        for run in range(runs):
            for name in ("bare", "magic") if run % 2 == 0 else ("magic", "bare"):
                rates[name].append(paths[name]().decode_rate)
        same = (
            shell.user_ns["_llm_reply"].strip()
            == tokenizer.decode(bare_ids, skip_special_tokens=True).strip()
        )
    ratio = statistics.median(m / b for m, b in zip(rates["magic"], rates["bare"], strict=True))
    return {
        "new tokens": len(bare_ids),
        "rounds": runs,
        "bare generate tok/s": statistics.median(rates["bare"]),
        "%%llm_chat tok/s": statistics.median(rates["magic"]),
        "ratio": ratio,
        "≥ 0.97": ratio >= 0.97,
        "same reply": same,
    }


def first_token_over_turns(
    shell, folder: Path, options: str, turns: int = 20, conversations: int = 3, new_tokens: int = 16
) -> dict:
    """Time to first token (the first reply text on the display) at each turn of a conversation,
    with the key/value cache reused (the default); per turn the median over a few conversations."""
    from benchmarks.bench_chat import magic_turn, user_message

    flags = f"--temperature 0 --max-new-tokens {new_tokens}"
    first: dict[int, list[float]] = {number: [] for number in range(1, turns + 1)}
    with loaded(shell, folder, options):
        magic_turn(shell, PROMPT, f"--new {flags}")  # warm-up
        for _ in range(conversations):
            shell.run_line_magic("llm_reset", "")
            for number in first:
                turn = magic_turn(shell, user_message(number), flags)
                first[number].append(turn.ttft)
    assert turn.recorder is not None
    counts = re.search(
        r"([\d,]+) prompt tokens \(([\d,]+) reused\)", turn.recorder.events[-1][2]["text/plain"]
    )
    prompt, reused = (int(c.replace(",", "")) for c in counts.groups()) if counts else (0, 0)
    median = {number: statistics.median(times) for number, times in first.items()}
    return {
        **{f"turn {n} ms": median[n] * 1000 for n in sorted({1, 5, 10, turns})},
        f"turn {turns} / turn 1": median[turns] / median[1],
        f"turn {turns} prompt tokens": prompt,
        "of them reused": reused,
        "conversations": conversations,
    }


def _history(shell) -> list[dict[str, str]]:
    """The active conversation, as `%llm_history --json` prints it."""
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        shell.run_line_magic("llm_history", "--json")
    return json.loads(shown.stdout)["messages"]


def interrupt(shell, folder: Path, options: str, after: int = 8) -> dict:
    """An interrupt (SIGINT in the main thread, as the stop button sends) after `after` forward
    passes of a long reply: passes run after it, seconds until the cell returned, and whether the
    conversation kept the partial reply and the next turn equals bare generate on that history."""
    import _thread

    from benchmarks.bench_chat import bare_turn

    with loaded(shell, folder, options) as (model, tokenizer):
        passes: list[float] = []
        sent: dict[str, float] = {}
        done = threading.Event()

        def press_stop() -> None:
            while len(passes) < after and not done.is_set():
                time.sleep(0.001)
            if not done.is_set():
                sent.update(at=time.perf_counter(), passes=len(passes))
                _thread.interrupt_main()

        threads = set(threading.enumerate())
        hook = model.register_forward_hook(lambda *_: passes.append(time.perf_counter()))
        stopper = threading.Thread(target=press_stop)
        stopper.start()
        try:
            stopped = shell.run_cell(f"%%llm_chat --new --temperature 0 --max-new-tokens 400\n{PROMPT}")
            returned = time.perf_counter()
        finally:
            done.set()
            stopper.join()
            hook.remove()
        partial, kept = shell.user_ns.get("_llm_reply"), _history(shell)
        going_on = shell.run_cell("%%llm_chat --temperature 0 --max-new-tokens 8\nGo on.")
        history = _history(shell)
        expected = tokenizer.decode(
            bare_turn(model, tokenizer, history[:-1], 8).new_ids, skip_special_tokens=True
        )
    steps_after = len(passes) - int(sent["passes"]) if sent else None
    return {
        "forward passes before it": sent.get("passes"),
        "passes after it": steps_after,
        "within one step": steps_after is not None and steps_after <= 1,
        "seconds until the cell returned": returned - sent["at"] if sent else None,
        "error shown": type(stopped.error_in_exec).__name__,
        "partial reply kept": kept
        == [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": partial}],
        "next turn worked": going_on.success and len(history) == 4,
        "next turn equals generate": history[-1]["content"].strip() == expected.strip(),
        # Threads of other libraries may end meanwhile; what counts is a new one left running.
        "threads left": [t.name for t in threading.enumerate() if t not in threads],
    }


def _display(shell, magic: str, line: str) -> dict[str, str]:
    """What a line magic displayed last: its data by MIME type."""
    from IPython.utils.capture import capture_output

    with capture_output() as shown:
        shell.run_line_magic(magic, line)
    return shown.outputs[-1].data


def _as_shown(shown: str, p: float) -> bool:
    """Whether `shown` ("12.3%", "0.45%", "<0.01%" or "0.1234") is `p` as the display rounds it."""
    scale = 100 if shown.endswith("%") else 1
    number = shown.lstrip("<").rstrip("%")
    if shown.startswith("<"):
        return p * scale < float(number)
    half_step = 0.5 * 10 ** -len(number.partition(".")[2])
    return abs(p * scale - float(number)) <= half_step + 1e-6 * scale


def next_check(shell, text: str, hand: Any, show: int = 5) -> dict:
    """`%llm_next`'s bars and `llm_magics.next_token_distribution` (the numbers it draws) beside
    softmax of the model's last logits, computed by hand."""
    import llm_magics

    top = hand.topk(show)
    shown = _display(shell, "llm_next", f"--show {show} {text}")["text/plain"]
    # "   1  ·selector        ██▌      13.0%   13.0%": rank, token, bar, p at T = 1, sampled.
    bars = re.findall(r"^\s*\d+\s+\S+\s.*?(<?[\d.]+%)", shown, re.M)
    api = llm_magics.next_token_distribution(text, name="check", show=show)
    entropy = float(-(hand * hand.clamp_min(1e-30).log2()).sum())
    expected = top.values.tolist()
    return {
        "same tokens": [c.id for c in api.candidates] == top.indices.tolist(),
        "largest difference": max(
            abs(c.probability - p) for c, p in zip(api.candidates, expected, strict=True)
        ),
        "entropy difference (bits)": abs(api.entropy - entropy),
        "likeliest p": expected[0],
        "bars as shown": len(bars) == show and all(map(_as_shown, bars, expected)),
    }


def _tooltips(page: str) -> list[tuple[int, str, list[tuple[int, str]]]]:
    """Each token's (id, p, alternatives as (id, p)) from `%tokens --probs`' hover titles, p as shown."""
    rows: list[tuple[int, str, list[tuple[int, str]]]] = []
    for title in re.findall(r'title="([^"]*)"', page):
        for line in html.unescape(title).splitlines():
            if chosen := re.fullmatch(r"p\((\d+)\) = ([\d.]+)", line):
                rows.append((int(chosen[1]), chosen[2], []))
            elif (alternative := re.fullmatch(r"  ([\d.]+)  .*\((\d+)\)", line)) and rows:
                rows[-1][2].append((int(alternative[2]), alternative[1]))
    return rows


def probs_check(shell, text: str, ids: list[int], hand: Any) -> dict:
    """`%tokens --probs`: each token's probability and its alternatives (the hover titles, 4
    decimals) and the perplexity (2 decimals) beside the same numbers computed by hand."""
    import torch

    shown = _display(shell, "tokens", f"--probs {text}")
    rows = _tooltips(shown["text/html"])
    chosen = hand[:-1].gather(1, torch.tensor(ids[1:], device=hand.device)[:, None])[:, 0]
    top = hand[:-1].topk(max(1, len(rows[0][2]) if rows else 1))
    perplexity = math.exp(-chosen.clamp_min(1e-45).log().mean().item())
    found = re.search(r"perplexity ([\d,.]+)", shown["text/plain"])
    shown_perplexity = float(found[1].replace(",", "")) if found else math.nan
    return {
        "same ids": [row[0] for row in rows] == ids[1:],
        "each token's p as shown": all(map(_as_shown, [row[1] for row in rows], chosen.tolist())),
        "same alternatives": [[i for i, _ in row[2]] for row in rows] == top.indices.tolist(),
        "alternatives' p as shown": all(
            _as_shown(p_shown, p)
            for row, values in zip(rows, top.values.tolist(), strict=True)
            for (_, p_shown), p in zip(row[2], values, strict=True)
        ),
        "perplexity relative difference": abs(shown_perplexity - perplexity) / perplexity,
    }


def next_and_probs(shell, folder: Path, options: str) -> dict:
    """`%llm_next` and `%tokens --probs` on the device beside softmax of the same model's logits."""
    import torch

    with loaded(shell, folder, options) as (model, tokenizer):
        text = "The capital of France is"
        ids = tokenizer(text)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
        hand = logits.softmax(dim=-1)
        return {
            "%llm_next": next_check(shell, text, hand[-1]),
            "%tokens --probs": probs_check(shell, text, ids, hand),
        }
