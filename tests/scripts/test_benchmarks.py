"""What the benchmarks compute, tested on the CPU (their timings are never asserted): the paper
run's projection, and benchmarks/gpu_check.sh's plumbing in its CPU smoke mode."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import bench_run_time
import pytest
from helpers.entrypoints import REPO, environment


def test_a_paper_run_validates_113_times() -> None:
    """25,000 steps of 44 batches: 568 whole epochs, validation after epochs 5, 10, ..., 565."""
    assert bench_run_time.paper_validations() == 113
    assert bench_run_time.paper_validations(220) == 1


def test_projection_arithmetic() -> None:
    one = bench_run_time.project(step_s=0.36, validation_s=4.0)
    assert one["run_h"] == pytest.approx((25_000 * 0.36 + 113.5 * 4.0) / 3600)
    assert one["table_h"] == pytest.approx(35 * one["run_h"])
    assert one["validation_share"] == pytest.approx(113 * 4.0 / (25_000 * 0.36))
    shared = bench_run_time.project(step_s=0.5, validation_s=4.0, processes=4)
    assert shared["table_h"] == pytest.approx(math.ceil(35 / 4) * shared["run_h"])


def test_step_time_counts_every_timed_step_and_only_the_passes_between_them() -> None:
    """Steps of 2 s from t = 10: four steps, a 5 s pass after the second and one after the
    last (outside the timed span), and one before the first."""
    passes = [(4.0, 9.0), (14.0, 19.0), (23.0, 28.0)]
    assert bench_run_time.step_seconds(10.0, 23.0, 4, passes) == 2.0
    assert bench_run_time.step_seconds(10.0, 12.0, 1, []) == 2.0


def test_gpu_check_smoke_mode_runs_on_the_cpu(tmp_path: Path) -> None:
    """The GPU check's steps on the CPU with a tiny data set: every measurement is written."""
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke"],
                          cwd=REPO, env=environment(OUT=str(tmp_path), PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for name, processes in (("run-time-fp32", 1), ("run-time-bf16", 1),
                            ("run-time-fp32-x2", 2)):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["processes"] == processes and len(result["copies"]) == processes
        assert result["run_h"] > 0 and result["table_h"] >= result["run_h"]
    for row in ("| cpu | fp32 | 1 |", "| cpu | bf16 | 1 |", "| cpu | fp32 | 2 |"):
        assert row in done.stdout, row
