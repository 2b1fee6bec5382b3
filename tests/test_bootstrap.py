"""Paired bootstrap intervals (report/bootstrap.py): stated coverage on data with a known difference,
pairing, seeds, and their place in embedforge-report's Table 5."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedforge.report.bootstrap import delta_interval, mean_difference_interval
from embedforge.report.build import ReportSettings, build_report
from embedforge.report.runs import RunInput


def test_interval_covers_a_known_difference_at_the_stated_rate():
    """1,000 simulated pairs of per-query score vectors whose true mean difference is 0.03: the 95%
    interval must contain 0.03 in 93-97% of them (a percentile bootstrap at n=200 is close to nominal)."""
    rng = np.random.default_rng(1)
    true, covered, n = 0.03, 0, 200
    for _ in range(1000):
        base = rng.beta(2, 3, n)  # shared item difficulty: what pairing cancels
        row = base + true + rng.normal(0, 0.1, n)  # per-item differences: mean 0.03 in the population
        low, high = mean_difference_interval(row, base, resamples=1000, rng=rng)
        covered += low <= true <= high
    print(f"coverage of the 95% interval: {covered / 10:.1f}%")
    assert 930 <= covered <= 970, covered


def test_pairing_narrows_the_interval_when_rows_share_item_difficulty():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 300)
    row = base + 0.02 + rng.normal(0, 0.02, 300)
    paired = mean_difference_interval(row, base)
    unpaired_width = 2 * 1.96 * np.sqrt(row.var() / 300 + base.var() / 300)
    assert paired[0] > 0 and (paired[1] - paired[0]) < unpaired_width / 5


def _items(values):
    return {"kind": "mean", "ids": list(range(len(values))), "values": list(map(float, values))}


def test_seeds_widen_the_interval_by_their_spread():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 400)
    one = [{"T": _items(base + 0.01)}]
    spread = [{"T": _items(base + shift)} for shift in (-0.02, 0.01, 0.04)]  # same mean delta, seed noise
    narrow = delta_interval(one, [{"T": _items(base)}], ["T"])
    wide = delta_interval(spread, [{"T": _items(base)}], ["T"])
    assert narrow.high - narrow.low < 0.01 and wide.high - wide.low > 2.0  # points x 100
    assert wide.seeds == (3, 1) and not wide.detectable and narrow.detectable


def _record(folder, kind, **fields):
    folder.mkdir(parents=True)
    (folder / "run_record.json").write_text(json.dumps({"kind": kind, **fields}))


def test_report_pools_seeds_and_prints_intervals(tmp_path):
    rng = np.random.default_rng(4)
    n = 300
    base_q = rng.uniform(0, 1, n)
    gold = rng.uniform(0, 5, n)
    records = tmp_path / "records"

    def evaluation(folder, run_id, shift, noise):
        values = np.clip(base_q + shift + rng.normal(0, noise, n), 0, 1)
        predicted = gold + rng.normal(0, 1.5, n)
        from embedforge.eval.item_scores import statistic

        items = {"R": _items(values), "S": {"kind": "spearman", "predicted": predicted.tolist(), "gold": gold.tolist()}}
        _record(folder, "evaluate", evaluated=run_id, item_scores=items,
                results={t: round(float(statistic(i)), 4) for t, i in items.items()})

    for row, shift in (("default", 0.0), ("better", 0.1), ("same", 0.0)):
        for seed in (1, 2, 3):
            run_id = f"{row}-{seed}"
            _record(records / row / f"seed{seed}" / "train", "train", run_id=run_id, run_name=f"grid_{row}",
                    config={"run_name": f"grid_{row}", "tags": ["grid"], "seed": seed})
            evaluation(records / row / f"seed{seed}" / "evaluate", run_id, shift, 0.05)
    _record(records / "old" / "train", "train", run_id="old-1", run_name="grid_old", config={"tags": ["grid"]})
    _record(records / "old" / "evaluate", "evaluate", evaluated="old-1", results={"R": 50.0, "S": 10.0})
    out = build_report(ReportSettings(runs=[RunInput(str(records / "**" / "run_record.json"))], baseline="default"),
                       tmp_path / "out")
    data = json.loads(out["json"].read_text())
    found = {d["key"]: d for d in data["deltas"]}
    assert found["better"]["seeds"] == 3 and found["better"]["base_seeds"] == 3
    assert found["better"]["low"] > 0 and found["better"]["effect"] == "detectable"
    assert found["same"]["low"] < 0 < found["same"]["high"] and found["same"]["effect"] == "no detectable effect"
    assert found["old"]["low"] is None and found["old"]["effect"] == "no interval: records without item scores"
    pooled = data["rows"]["better"]["scores"]["R"]
    assert len(data["rows"]["better"]["sources"]) == 6  # three seeds, a train and an evaluation record each
    assert pooled == pytest.approx(np.mean([json.loads((records / "better" / f"seed{s}" / "evaluate" / "run_record.json")
                                                       .read_text())["results"]["R"] for s in (1, 2, 3)]))
    md = out["markdown"].read_text()
    line = next(x for x in md.splitlines() if x.startswith("| better |"))
    assert f"[{found['better']['low']:+.2f}, {found['better']['high']:+.2f}]" in line and "| 3 / 3 |" in line

