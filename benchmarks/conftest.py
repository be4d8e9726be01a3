"""Benchmark fixtures: one shared model with every adapter installed, and the end-of-run report.

Run: ``.venv/bin/python -m pytest benchmarks -q --benchmark-only`` (small model, CPU). The
real-size ZeroScope UNet on a GPU: ``VIDEOMAGE_BENCH_SIZE=real`` (see README.md).
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks.harness import RESULTS, format_row, write_results
from benchmarks.models import BenchConfig, parameter_count
from benchmarks.world import make_world


@pytest.fixture(scope="session")
def bench_config() -> BenchConfig:
    return BenchConfig.from_env()


@pytest.fixture(scope="session")
def world(bench_config, tmp_path_factory):
    torch.manual_seed(0)
    if bench_config.device == "cpu":
        # One thread by default: on a shared, oversubscribed machine OpenMP's barriers make a
        # two-thread forward up to 20x slower than a one-thread one, and far noisier.
        torch.set_num_threads(int(os.environ.get("VIDEOMAGE_BENCH_THREADS", "1")))
    return make_world(bench_config, tmp_path_factory.mktemp("bench"))


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every benchmark starts with all adapters off and no gradients lying around."""
    yield
    if "world" in request.fixturenames:
        w = request.getfixturevalue("world")
        w.adapter.unmerge(w.backbone)
        w.adapter.activate(w.backbone, {})
        for name in w.adapter.adapter_names(w.backbone):
            for p in w.adapter.parameters(w.backbone, name):
                p.grad = None


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    import platform

    terminalreporter.section("videomage: ratios vs floors")
    terminalreporter.write_line(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
                                f"threads {torch.get_num_threads()}"
                                + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    for row in RESULTS:
        terminalreporter.write_line(format_row(row))
    out = os.environ.get("VIDEOMAGE_BENCH_JSON")
    if out:
        write_results(out)


__all__ = ["parameter_count"]
