"""`make bench`: every benchmark side by side in one run; prints the tables, writes RESULTS.md.

`make bench-peers` runs benchmarks/bench_peers.py instead (llama.cpp, profiles, CPU settings) and
writes RESULTS_PEERS.md; it needs llama-cpp-python, which takes about ten minutes to compile.
"""

from __future__ import annotations

import sys
import time

from benchmarks import (
    bench_chat,
    bench_inside,
    bench_load,
    bench_memory,
    bench_peers,
    bench_tokens,
    gpu_report,
)
from benchmarks.common import RESULTS, ROOT, Section, write_results


class KeptGpuSection:
    """The GPU section between its markers, kept as it is: only `gpu_check.py --write-results` writes it."""

    def markdown(self) -> str:
        text = RESULTS.read_text(encoding="utf-8")
        kept = text.split(gpu_report.START, 1)[1].split(gpu_report.END, 1)[0]
        return f"{gpu_report.START}{kept}{gpu_report.END}\n"


def main(argv: list[str]) -> None:
    started = time.perf_counter()
    if "--peers" in argv:
        sections = bench_peers.run()
        for section in sections:
            section.print()
        write_results(
            sections,
            ROOT / "benchmarks" / "RESULTS_PEERS.md",
            "Decode speed against llama.cpp",
            "make bench-peers",
        )
        return
    sections: list[Section] = []
    for bench in (
        bench_chat.run,
        lambda: [bench_load.run()],
        lambda: [bench_memory.run()],
        lambda: [bench_tokens.run()],
        lambda: [bench_inside.run()],
    ):
        for section in bench():
            section.print()
            sections.append(section)
    sections.append(KeptGpuSection())  # type: ignore[arg-type]
    write_results(sections)
    print(f"benchmarks took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
