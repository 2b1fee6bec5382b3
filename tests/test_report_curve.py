"""embedforge-report's learning curve: a training record's in-training scores beside untrained records."""

from __future__ import annotations

import json

import pytest

from embedforge.errors import ConfigError
from embedforge.report.curve import crossing, curve_section, read_curve


def _write(folder, record):
    folder.mkdir(parents=True)
    (folder / "run_record.json").write_text(json.dumps({"format_version": 1, **record}))
    return folder


def _trained(tmp_path, sts=(50.0, 61.0, 66.0), sample=None):
    return _write(tmp_path / "trained", {
        "kind": "train", "run_id": "curve/1", "global_step": 20, "wall_time_s": 600.0,
        "encoder": {"pooling": "last_token"},
        "config": {"callbacks": {"mteb_eval": {"subsample": sample}}},
        "mteb_eval": {"history": [{"step": 10 * i, "val/STSB/cosine_spearman": v} for i, v in enumerate(sts[1:], 1)]},
        "val_history": [{"step": 0, "acc@1": 0.1, "ndcg@10": 0.2}, {"step": 10, "acc@1": 0.3, "ndcg@10": 0.4},
                        {"step": 20, "acc@1": 0.35, "ndcg@10": 0.5}]})


def _untrained(tmp_path, pooling, sts, sample=None):
    return _write(tmp_path / f"base_{pooling}", {
        "kind": "evaluate", "encoder": {"pooling": pooling}, "results": {"STSB": sts, "Other": 1.0},
        "config": {"eval": {"subsample": sample}}})


def _step0(tmp_path, pooling, ndcg):
    return _write(tmp_path / f"step0_{pooling}", {
        "kind": "train", "global_step": 0, "encoder": {"pooling": pooling},
        "val_before": {"val/acc@1": 0.25, "val/ndcg@10": ndcg}})


def test_the_curve_finds_where_training_passes_the_best_untrained_pooling(tmp_path):
    curve = read_curve(_trained(tmp_path), [_untrained(tmp_path, "last_token", 50.0), _untrained(tmp_path, "mean", 62.5),
                                            _step0(tmp_path, "mean", 0.45)])
    assert curve.steps == [0, 10, 20]
    assert curve.measures["STSB"] == {0: 50.0, 10: 61.0, 20: 66.0}  # step 0: the untrained last-token record
    assert "Other" not in curve.untrained  # a task the curve does not score
    assert crossing(curve, "STSB") == "step 20 (untrained best: mean pooling, 62.50)"
    assert crossing(curve, "held-out validation ndcg@10") == "step 20 (untrained best: mean pooling, 45.00)"
    assert crossing(curve, "held-out validation acc@1").startswith("step 10 ")
    text = "\n".join(curve_section(curve, tmp_path / "c.png"))
    assert "| 20 | 66.00 | 35.00 | 50.00 |" in text and "600 s" in text


def test_a_curve_that_never_passes_says_so(tmp_path):
    curve = read_curve(_trained(tmp_path), [_untrained(tmp_path, "mean", 70.0)])
    assert crossing(curve, "STSB") == "never within 20 steps (untrained best: mean pooling, 70.00)"
    assert crossing(curve, "held-out validation acc@1") == "no untrained score"


def test_untrained_lines_on_another_sample_or_a_trained_run_are_refused(tmp_path):
    trained = _trained(tmp_path, sample={"STSB": 500})
    with pytest.raises(ConfigError, match=r"^curve.untrained: .*would not be comparable"):
        read_curve(trained, [_untrained(tmp_path, "mean", 70.0)])
    assert read_curve(trained, [_untrained(tmp_path, "cls", 70.0, sample={"STSB": 500})]).label("STSB") == "STSB (500-item sample)"
    with pytest.raises(ConfigError, match=r"^curve.untrained: .*trained 20 steps"):
        read_curve(trained, [trained])
    with pytest.raises(ConfigError, match=r"^curve.run: .*not a training run record"):
        read_curve(tmp_path / "base_cls", [])
