"""embedforge-report: tables from run records; missing runs stay missing; deltas computed on common tasks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from embedforge.paths import CONF_DIR, REPO_ROOT
from embedforge.report.build import ReportSettings, build_report
from embedforge.report.paper import load_paper
from embedforge.report.runs import ReportInputError, RunInput, row_key

BASE = {"STSBenchmark": 80.0, "SciFact": 60.0, "Banking77Classification": 70.0}
POOLING_MEAN = {"STSBenchmark": 79.0, "SciFact": 62.0, "Banking77Classification": 70.0}


def _train(root: Path, run_name: str, time: str, tags=(), run_id=None) -> Path:
    folder = root / run_name / time
    folder.mkdir(parents=True)
    (folder / "run_record.json").write_text(json.dumps({
        "kind": "train", "run_name": run_name, "run_id": run_id or f"{run_name}/{time}",
        "config": {"run_name": run_name, "tags": list(tags)}}))
    return folder


def _evaluate(root: Path, time: str, evaluated: str | None, results: dict) -> Path:
    folder = root / "evaluate" / time
    folder.mkdir(parents=True)
    (folder / "run_record.json").write_text(json.dumps({"kind": "evaluate", "evaluated": evaluated, "results": results}))
    return folder


@pytest.fixture
def grid(tmp_path):
    runs = tmp_path / "runs"
    _train(runs, "paper_synthetic_msmarco", "t1")
    _evaluate(runs, "e1", "paper_synthetic_msmarco/t1", BASE)
    _train(runs, "mean_pool", "t1", tags=["row:pooling_mean"])
    _evaluate(runs, "e2", "mean_pool/t1", POOLING_MEAN)
    _train(runs, "paper_ablation_lora_r8", "t1")  # trained, never evaluated
    _train(runs, "no_hard_negatives", "t1")
    _evaluate(runs, "e3", "no_hard_negatives/t1", {"STSBenchmark": 81.0, "SciFact": 58.0})
    return runs


def _report(runs: Path, out: Path, **kw):
    settings = ReportSettings(runs=[RunInput(str(runs / "*" / "*"))], **kw)
    return build_report(settings, out)


def _row(markdown: str, start: str, after: str | None = None) -> list[str]:
    """The cells of the first table line starting with `start` (after the line containing `after`)."""
    lines = markdown.splitlines()
    if after:
        lines = lines[next(i for i, line in enumerate(lines) if after in line):]
    line = next(line for line in lines if line.startswith(start))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_table1_ours_paper_and_deltas_with_missing_rows(grid, tmp_path):
    out = _report(grid, tmp_path / "out")
    md = out["markdown"].read_text()
    # columns: variant, who, tasks, Class, Clust, PairCl, Rerank, Retr, STS, Summ, Avg
    ours = _row(md, "| | ours |", after="| synthetic + MS-MARCO | paper |")
    assert ours[2] == "3 of 56 tasks"
    assert ours[3] == "70.00" and ours[7] == "60.00" and ours[8] == "80.00" and ours[10] == "70.00"
    assert ours[4] == "–" and ours[9] == "–"  # no clustering/summarisation task: not invented
    delta = _row(md, "| | ours − paper |", after="| synthetic + MS-MARCO | paper |")
    assert delta[3] == f"{70 - 78.3:+.2f}" and delta[8] == f"{80 - 81.2:+.2f}" and delta[10] == f"{70 - 64.5:+.2f}"
    missing = _row(md, "| | ours |", after="| full data | paper |")
    assert missing[2] == "missing" and set(missing[3:]) == {"missing"}


def test_table5_deltas_on_common_tasks_and_missing_runs(grid, tmp_path):
    out = _report(grid, tmp_path / "out")
    md = out["markdown"].read_text()
    # columns: ablation, paper avg, paper Δ, ours avg, ours Δ [CI], effect, seeds, our base, note
    mean = _row(md, "| mean pooling |")
    expected = sum(POOLING_MEAN[t] - BASE[t] for t in BASE) / 3
    assert mean[1] == "64.1" and mean[2] == f"{64.1 - 64.5:+.1f}" and mean[4] == f"{expected:+.2f}"
    assert _row(md, "| no instruction |")[3:5] == ["missing", "missing"]
    r8 = _row(md, "| LoRA r=8 |")
    assert r8[4] == "–" and r8[8] == "no scores"  # a run without evaluation is not a zero
    pretrain = _row(md, "| contrastive pre-training")
    assert pretrain[7] == "full_data (missing)" and pretrain[2] == f"{66.7 - 66.6:+.1f}"
    ours_only = _row(md, "| no_hard_negatives |")
    assert ours_only[1] == "–" and "not in the paper" in ours_only[8]
    assert ours_only[4] == f"{((81 - 80) + (58 - 60)) / 2:+.2f}" and "2 tasks in common" in ours_only[8]
    data = json.loads(out["json"].read_text())
    assert {d["key"]: d["ours"] for d in data["deltas"]}["no_instruction"] is None
    png = out["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_grid_records_layout_keys_rows_by_their_folders(tmp_path):
    """experiments/run_grid.sh keeps records as <grid>/records/<row>/{train,evaluate}/run_record.json;
    runs are named <grid>_<row>; an evaluation-only row (the untrained base) is keyed by its folder too."""
    records = tmp_path / "small_grid" / "records"
    for row, scores in (("default", BASE), ("lora_r8", {**BASE, "SciFact": 61.0})):
        (records / row / "train").mkdir(parents=True)
        (records / row / "train" / "run_record.json").write_text(json.dumps({
            "kind": "train", "run_name": f"small_grid_{row}", "run_id": f"id-{row}",
            "config": {"run_name": f"small_grid_{row}", "tags": ["small_grid", "minilm"]}}))
        (records / row / "evaluate").mkdir()
        (records / row / "evaluate" / "run_record.json").write_text(json.dumps(
            {"kind": "evaluate", "evaluated": f"id-{row}", "results": scores}))
    (records / "base" / "evaluate").mkdir(parents=True)
    (records / "base" / "evaluate" / "run_record.json").write_text(json.dumps(
        {"kind": "evaluate", "evaluated": None, "results": {**BASE, "SciFact": 64.5}}))
    out = build_report(ReportSettings(runs=[RunInput(str(records / "*" / "*"))], baseline="default"), tmp_path / "out")
    md = out["markdown"].read_text()
    assert set(json.loads(out["json"].read_text())["rows"]) == {"default", "lora_r8", "base"}
    assert _row(md, "| LoRA r=8 |")[4] == f"{1 / 3:+.2f}"
    assert _row(md, "| default | default |")[2] == "3" and _row(md, "| base | base |")[2] == "3"
    assert "## Table 1" not in md  # no row stands for a Table 1 variant: no table of "missing"


def test_baseline_option_and_labels(grid, tmp_path):
    out = _report(grid, tmp_path / "out", baseline="no_hard_negatives", labels={"no_hard_negatives": "no hard negatives"})
    md = out["markdown"].read_text()
    mean = _row(md, "| mean pooling |")
    assert mean[7] == "no_hard_negatives" and mean[4] == f"{((79 - 81) + (62 - 58)) / 2:+.2f}"
    assert "*base: no hard negatives*" in md


def test_row_keys_from_tags_and_run_names():
    known = set(load_paper().table1) | set(load_paper().table5)
    assert row_key({"tags": ["x", "row:my_row"]}, None, "paper_lora_r8", known) == "my_row"
    assert row_key({"tags": ["paper", "lora_r32"]}, None, "whatever", known) == "lora_r32"
    assert row_key({}, None, "paper_ablation_pooling_weighted_mean", known) == "pooling_weighted_mean"
    assert row_key({}, None, "paper/full_data", known) == "full_data"
    assert row_key({}, None, "default", known) == "default"
    # grid runs are named <grid tag>_<row>
    assert row_key({"tags": ["small_grid", "minilm"]}, None, "small_grid_lora_r8", known) == "lora_r8"
    assert row_key({"tags": ["small_grid"]}, None, "small_grid_temperature_005", known) == "temperature_005"
    assert row_key({"tags": ["small_grid"]}, None, "small_grid", known) == "small_grid"
    assert row_key({"tags": ["other"]}, None, "small_grid_lora_r8", known) == "small_grid_lora_r8"


def test_malformed_record_fails_naming_file_line_or_is_counted(grid, tmp_path):
    bad = grid / "broken" / "t1"
    bad.mkdir(parents=True)
    (bad / "run_record.json").write_text('{"kind": "train",\n  "run_name": \n}')
    with pytest.raises(ReportInputError, match=r"broken/t1/run_record.json:3: not valid JSON"):
        _report(grid, tmp_path / "out")
    settings = ReportSettings(runs=[RunInput(str(grid / "*" / "*")), RunInput(str(tmp_path / "nothing*"))], on_error="skip")
    out = build_report(settings, tmp_path / "out2")
    md = out["markdown"].read_text()
    assert out["skipped"] == 2 and "## Inputs not used (2)" in md and "matched nothing" in md
    assert "| mean pooling |" in md  # the good records still count


def test_unknown_task_category_from_local_task_json(tmp_path):
    runs = tmp_path / "runs"
    _train(runs, "default", "t1")
    _evaluate(runs, "e1", "default/t1", {"MySTS": 50.0, "Mystery": 10.0})
    tasks = tmp_path / "tasks" / "MySTS"
    tasks.mkdir(parents=True)
    (tasks / "task.json").write_text(json.dumps({"type": "STS", "mteb_task": None}))
    out = _report(runs, tmp_path / "out", data_dirs=[tmp_path / "tasks"])
    md = out["markdown"].read_text()
    row = _row(md, "| default |", after="## All our rows by category")
    assert row[2] == "2" and row[3] == "50.00" and row[-1] == "30.00"
    assert "Tasks without a known category" in md and "Mystery" in md


def test_paper_numbers_match_docs_method():
    """The data file holds the numbers of docs/method.md section 4 (parsed here independently)."""
    text = (REPO_ROOT / "docs" / "method.md").read_text()
    section = text[text.index("## 4."):text.index("## 5.")]
    paper = load_paper()
    labels = {"full data": "full_data", "synthetic only": "synthetic_only", "synthetic + MS-MARCO": "synthetic_msmarco"}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = labels.get(cells[0]) or ("no_synthetic" if cells[0].startswith("without synthetic") else None)
        if key:
            numbers = [float(c) for c in cells[1:]]
            row = paper.table1[key]
            assert [row.scores[c] for c in paper.categories] + [row.average] == numbers, key
    for label, key in [("mean pooling", "pooling_mean"), ("weighted-mean pooling", "pooling_weighted_mean"),
                       ("LoRA r8", "lora_r8"), ("r32", "lora_r32"), ("no instruction", "no_instruction"),
                       ("task-type prefix", "task_type_prefix"), ("LLaMA-2-7B init", "llama2_init"),
                       ("MS-MARCO only", "msmarco_only")]:
        found = re.search(re.escape(label) + r"\s+(\d+\.\d)", section.replace("\n", " "))
        assert found and float(found.group(1)) == paper.table5[key].average, label
    assert "Mistral-7B 66.6 -> 66.7" in section and paper.table5["pretrain_then_full_data"].average == 66.7


def test_wandb_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ReportInputError, match="wandb.project=me/proj: the W&B API needs the network"):
        build_report(ReportSettings(wandb_project="me/proj"), tmp_path)


def test_wandb_runs_become_rows(monkeypatch, tmp_path):
    """The W&B path with a stand-in for wandb.Api (what a project query returns: config, tags, summary)."""
    import wandb

    class Run:
        def __init__(self, id, config, tags, summary):
            self.id, self.name, self.config, self.tags, self.summary = id, config["run_name"], config, tags, summary
            self.created_at = id

    class Api:
        def __init__(self, timeout=None):
            pass

        def runs(self, project, filters=None):
            assert project == "me/proj"
            return [Run("a", {"run_name": "paper_synthetic_msmarco"}, [], {"eval/STSBenchmark": 80.0, "eval/category/STS": 80.0}),
                    Run("b", {"run_name": "x"}, ["lora_r8"], {"eval/STSBenchmark": 81.5, "train/loss": 0.3})]

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(wandb, "Api", Api)
    out = build_report(ReportSettings(wandb_project="me/proj"), tmp_path)
    data = json.loads(out["json"].read_text())
    assert data["rows"]["synthetic_msmarco"]["scores"] == {"STSBenchmark": 80.0}
    assert data["rows"]["lora_r8"]["sources"] == ["wandb:me/proj/b"]
    assert _row(out["markdown"].read_text(), "| LoRA r=8 |")[4] == "+1.50"


def test_cli_composes_and_writes(grid, tmp_path):
    from embedforge.cli.report import run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("report", overrides=[f"runs=[{grid}/*/*]", f"output_dir={tmp_path / 'cli'}"])
    out = run(cfg)
    assert out["markdown"].is_file() and out["png"].is_file() and out["rows"] == 4
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("report", overrides=["runs=[{bad: 1}]", f"output_dir={tmp_path / 'cli2'}"])
    with pytest.raises(ValueError, match=r"runs\.0"):
        run(cfg)


def test_every_paper_experiment_config_maps_to_a_paper_row():
    """conf/experiment/paper/*.yaml run names land on the paper rows they reproduce (pretrain_weak is a stage)."""
    from omegaconf import OmegaConf

    paper = load_paper()
    known = set(paper.table1) | set(paper.table5)
    keys = {}
    for path in sorted((CONF_DIR / "experiment" / "paper").glob("*.yaml")):
        run_name = OmegaConf.load(path).get("run_name")
        if run_name:
            keys[path.stem] = row_key({"tags": ["paper"]}, None, run_name, known)
    assert keys, "no paper experiment configs found"
    unmapped = {stem: key for stem, key in keys.items() if key not in known and stem != "pretrain_weak"}
    assert not unmapped
    assert known <= set(keys.values())  # every paper row has an experiment


def _versions(**changed) -> dict:
    base = {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2",
            "pytorch-lightning": "2.6.6", "mteb": "2.26.24", "sentence-transformers": "6.3.0", "embedforge": "0.1.0"}
    return {**base, **{k.replace("_", "-"): v for k, v in changed.items()}}


def test_rows_on_other_package_versions_are_marked(tmp_path):
    runs = tmp_path / "runs"
    for name, versions in [("grid_default", _versions()), ("grid_lora_r8", _versions()),
                           ("grid_lora_r32", _versions(transformers="5.25.0")), ("grid_mean", _versions())]:
        folder = _train(runs, name, "t1", tags=["grid"])
        record = json.loads((folder / "run_record.json").read_text())
        (folder / "run_record.json").write_text(json.dumps({**record, "versions": versions}))
        # its evaluation ran on another mteb for one row only: that row differs within itself
        evaluation = _evaluate(runs, f"e_{name}", f"{name}/t1", BASE)
        eval_record = json.loads((evaluation / "run_record.json").read_text())
        mteb = "2.26.23" if name == "grid_mean" else "2.26.24"
        (evaluation / "run_record.json").write_text(json.dumps({**eval_record, "versions": {**versions, "mteb": mteb}}))
    out = _report(runs, tmp_path / "out", baseline="default")
    markdown = out["markdown"].read_text()
    data = json.loads(out["json"].read_text())
    assert data["rows"]["lora_r32"]["version_differences"] == ["transformers 5.25.0 (others: 5.24.0)"]
    assert data["rows"]["mean"]["version_differences"] == ["mteb 2.26.23 / 2.26.24 (others: 2.26.24)"]
    assert data["rows"]["lora_r8"]["version_differences"] == [] and data["rows"]["default"]["version_differences"] == []
    assert _row(markdown, "| lora_r32 |", after="## All our rows")[1] == "LoRA r=32 †"
    assert _row(markdown, "| lora_r8 |", after="## All our rows")[1] == "LoRA r=8"
    assert "**5.25.0**" in _row(markdown, "| lora_r32 |", after="## Package versions")
    assert "key package versions differ from the other rows: transformers 5.25.0" in markdown


def test_version_differences_ties_and_missing():
    from embedforge.report.versions import version_differences

    assert version_differences({"a": {"peft": "0.21.2"}, "b": {"peft": "0.21.2"}, "c": {}}) == {}
    tie = version_differences({"a": {"peft": "0.21.2"}, "b": {"peft": "0.20.0"}})
    assert tie == {"a": ["peft 0.21.2 (others: 0.20.0)"], "b": ["peft 0.20.0 (others: 0.21.2)"]}


def test_the_report_names_the_commit_of_each_rows_records(tmp_path):
    """report.md's Commits section: each row's records by git sha and tree state (clean / dirty)."""
    records = tmp_path / "grid" / "records"
    for row, sha, dirty in (("default", "a" * 40, False), ("lora_r8", "b" * 40, True)):
        (records / row / "train").mkdir(parents=True)
        (records / row / "train" / "run_record.json").write_text(json.dumps({
            "kind": "train", "run_name": f"grid_{row}", "run_id": f"id-{row}", "git": {"sha": sha, "dirty": dirty},
            "config": {"run_name": f"grid_{row}", "tags": ["grid"]}}))
        (records / row / "evaluate").mkdir()
        (records / row / "evaluate" / "run_record.json").write_text(json.dumps(
            {"kind": "evaluate", "evaluated": f"id-{row}", "results": BASE, "git": {"sha": sha, "dirty": dirty}}))
    md = build_report(ReportSettings(runs=[RunInput(str(records / "*" / "*"))], baseline="default"),
                      tmp_path / "out")["markdown"].read_text()
    section = md.split("## Commits")[1].split("##")[0]
    assert "| default | `aaaaaaaaaaaa` (clean): 2 |" in section
    assert "| lora_r8 | `bbbbbbbbbbbb` (dirty): 2 |" in section
