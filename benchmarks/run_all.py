"""Run every benchmark in one go (`make bench`); each prints its own Markdown table.

    python benchmarks/run_all.py [--quick]
"""

from __future__ import annotations

import importlib
import sys
import time

# The benchmarks import each other by name: this folder is sys.path[0] when run as a script.
BENCHMARKS = ("bench_sot", "bench_encoder", "bench_synth_stft", "bench_train_step",
              "bench_run_time", "bench_data", "bench_memory")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        start = time.perf_counter()
        importlib.import_module(name).main(list(argv))
        print(f"\n({name}: {time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
