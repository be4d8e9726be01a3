"""Timing a candidate against its floor in one run, and reporting the ratio.

CPU timings on a shared machine drift by tens of percent over a minute, so a ratio is never
taken between two separate runs: each round times the floor and then the candidate back to back
(pytest-benchmark's ``setup`` hook runs the floor, untimed by it, right before each timed
candidate call), and the reported ratio is the **median of the per-round ratios**. On CUDA every
timed call ends with a synchronisation, so the time is the GPU's, not the launch queue's.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable

import attrs

RESULTS: list[dict] = []  # every result of this session, printed at the end (see conftest.py)


@attrs.define
class Comparison:
    name: str
    candidate: list[float]
    floor: list[float]
    target: str  # "<= 1.10", "< 0.02", "0.97..1.03", or "" (informational)
    shapes: str
    note: str = ""

    @property
    def ratios(self) -> list[float]:
        return [c / f for c, f in zip(self.candidate, self.floor)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def met(self) -> bool | None:
        if not self.target:
            return None
        low, _, high = self.target.partition("..")
        if high:
            return float(low) <= self.ratio <= float(high)
        op, value = self.target.split()
        return self.ratio <= float(value) if op == "<=" else self.ratio < float(value)

    def record(self, benchmark=None) -> dict:
        row = {
            "name": self.name,
            "ratio": round(self.ratio, 4),
            "target": self.target or "informational",
            "met": self.met(),
            "candidate_median_ms": round(1e3 * statistics.median(self.candidate), 3),
            "floor_median_ms": round(1e3 * statistics.median(self.floor), 3),
            "ratio_spread": [round(min(self.ratios), 3), round(max(self.ratios), 3)],
            "rounds": len(self.candidate),
            "shapes": self.shapes,
            "note": self.note,
        }
        RESULTS.append(row)
        if benchmark is not None:
            benchmark.extra_info.update(row)
        print(format_row(row))
        return row


def format_row(row: dict) -> str:
    verdict = {True: "MET", False: "MISSED", None: "info"}[row["met"]]
    return (f"[{row['name']}] ratio {row['ratio']:.3f} (target {row['target']}: {verdict}); "
            f"candidate {row['candidate_median_ms']} ms vs floor {row['floor_median_ms']} ms, "
            f"per-round ratios {row['ratio_spread'][0]}..{row['ratio_spread'][1]} over {row['rounds']} rounds; "
            f"{row['shapes']}" + (f"; {row['note']}" if row["note"] else ""))


def compare(benchmark, world, name: str, candidate: Callable[[], object], floor: Callable[[], object], *,
            target: str = "", rounds: int | None = None, note: str = "",
            between: Callable[[], object] | None = None, after: Callable[[], object] | None = None) -> Comparison:
    """Time ``candidate`` with pytest-benchmark, the floor right before each round; record the ratio.

    ``between`` runs untimed after each floor call, ``after`` untimed after each candidate call
    (state changes such as merging that belong to neither measurement).
    """
    rounds = rounds or world.config.rounds
    times_c: list[float] = []
    times_f: list[float] = []

    def timed(fn: Callable[[], object], times: list[float], then: Callable[[], object] | None):
        def run():
            world.sync()
            start = time.perf_counter()
            fn()
            world.sync()
            times.append(time.perf_counter() - start)
            if then is not None:
                then()

        return run

    benchmark.pedantic(timed(candidate, times_c, after), setup=timed(floor, times_f, between), rounds=rounds,
                       iterations=1, warmup_rounds=1)
    # pytest-benchmark runs ``setup`` before warm-up rounds too: drop those pairs.
    times_c, times_f = times_c[-rounds:], times_f[-rounds:]
    result = Comparison(name=name, candidate=times_c, floor=times_f, target=target, shapes=world.shapes(), note=note)
    result.record(benchmark)
    strict = os.environ.get("VIDEOMAGE_BENCH_STRICT") == "1"
    if strict and result.met() is False:
        raise AssertionError(f"{name}: ratio {result.ratio:.3f} misses its target {target}")
    return result


def write_results(path: str) -> None:
    with open(path, "w") as fh:
        json.dump(RESULTS, fh, indent=1)
