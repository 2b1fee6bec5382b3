"""embedforge-report's contamination section: a grid's decontam.json, summarised and linked."""

from __future__ import annotations

import json

from embedforge.report.build import ReportSettings, build_report
from embedforge.report.runs import RunInput


def _record(folder, kind, **fields):
    folder.mkdir(parents=True)
    (folder / "run_record.json").write_text(json.dumps({"kind": kind, **fields}))


def test_report_links_the_grid_decontam_result(tmp_path):
    records = tmp_path / "records"
    _record(records / "a" / "evaluate", "evaluate", results={"T": 1.0})
    (records / "decontam.json").write_text(json.dumps({
        "training_records": 1199, "train_files": ["x.jsonl", "y.jsonl"], "flagged_records": 919,
        "settings": {"n": 13, "threshold": 0.5},
        "tasks": [{"task": "SciFact", "part": "corpus", "items": 5183, "found": 900, "share_found": 900 / 5183,
                   "training_records_involved": 919}]}))
    out = build_report(ReportSettings(runs=[RunInput(str(records / "*" / "*"))], decontam=[str(records / "decontam.json")]),
                       tmp_path / "out")
    md = out["markdown"].read_text()
    assert "[../records/decontam.json](../records/decontam.json): 1,199 training records (2 files), 919 flagged" in md
    assert "| SciFact | corpus | 5,183 | 900 | 17.36% | 919 |" in md
