"""The ablation script's tables: means and spreads over seeds, and paired wins of the full method."""

from __future__ import annotations

import pytest

from benchmarks.ablation import COLUMNS, VARIANTS, paired, table


def _results(full: float, other: float, leak_full: float, leak_other: float):
    row = {key: other for key, _, _ in COLUMNS}
    return {variant: dict(row, appearance_leakage=leak_other) for variant in VARIANTS} | {
        "full": dict({key: full for key, _, _ in COLUMNS}, appearance_leakage=leak_full)}


def test_table_gives_mean_and_sample_spread():
    text = table({0: _results(0.2, 0.1, 0.5, 0.5), 1: _results(0.4, 0.1, 0.5, 0.5)})
    full = next(line for line in text.splitlines() if line.startswith("| full |"))
    assert "0.300 ± 0.141" in full  # mean of 0.2 and 0.4, sample standard deviation
    assert "2 seeds (0, 1)" in text


def test_paired_counts_better_in_each_columns_own_direction():
    # Seed 0: full higher everywhere (better, but worse on leakage, where lower is better).
    # Seed 1: full lower everywhere (worse, but better on leakage).
    text = paired({0: _results(0.5, 0.1, 0.9, 0.1), 1: _results(0.1, 0.5, 0.1, 0.9), 2: _results(0.3, 0.3, 0.3, 0.3)})
    rows = [line for line in text.splitlines() if line.startswith("| w/o")]
    assert len(rows) == len(VARIANTS) - 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")][1:]
    leak = [key for key, _, _ in COLUMNS].index("appearance_leakage")
    assert cells[leak] == "1/3"  # seed 1 only; the tie in seed 2 is not a win
    assert all(cell == "1/3" for cell in cells)
    with pytest.raises(KeyError):
        paired({0: {"full": {}}})
