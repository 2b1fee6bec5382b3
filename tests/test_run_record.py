"""Run records: one format for training and evaluation, complete, without secrets, written once."""

import json
from importlib import metadata
from pathlib import Path

import pytest
from embedforge.run_record import (RECORD_FILE, SCHEMA_VERSION, VERSION_KEY, RunRecordError, build_run_record,
                                   read_run_record, write_run_record)
from embedforge.train.run import train

REPO = Path(__file__).resolve().parents[1]

TINY = ["model=tiny-mistral", "pooling=last_token", "lora=r8", "data.batch_size=8", "data.max_train_examples=16",
        "data.val_files=null", "validate_before_fit=false", "trainer.max_steps=2"]


def test_training_record_is_complete(compose_train, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDFORGE_TEST_API_KEY", "sk-do-not-log-me")
    cfg = compose_train(*TINY, "run_name=rec", "+logger.api_key=${oc.env:EMBEDFORGE_TEST_API_KEY}")
    train(cfg)
    text = (tmp_path / "runs/rec/run" / RECORD_FILE).read_text()
    assert "sk-do-not-log-me" not in text
    record = json.loads(text)
    assert record["kind"] == "train" and record["run_id"] == "rec/run" and record["global_step"] == 2
    for package in ("torch", "transformers", "peft", "pytorch-lightning", "mteb", "embedforge"):
        assert record["versions"][package] == metadata.version(package)
    assert len(record["git"]["sha"]) == 40 and isinstance(record["git"]["dirty"], bool)
    assert record["peak_memory"]["rss_gb"] > 0.1 and record["hardware"]["cpu_count"] >= 1
    assert record["data"]["demo"]["used"] == 16  # the mixture's per-source counts
    assert record["encoder"]["lora"]["r"] == 8 and record["config"]["model"]["pretrained"] == "tiny:mistral"
    assert record["train_metrics"]["train/loss"] > 0 and record["parent_run"] is None
    assert record["wandb_run_id"] is None  # logger=none in tests: missing, not invented


def test_records_are_written_once(tmp_path):
    write_run_record(tmp_path, build_run_record("evaluate", run_id="a"))
    with pytest.raises(FileExistsError, match="never rewritten"):
        write_run_record(tmp_path, build_run_record("evaluate", run_id="b"))
    assert read_run_record(tmp_path)["run_id"] == "a"
    with pytest.raises(ValueError, match="kind"):
        build_run_record("bogus")


def test_new_records_carry_the_schema_version(tmp_path):
    path = write_run_record(tmp_path, build_run_record("evaluate", run_id="a"))
    assert json.loads(path.read_text())[VERSION_KEY] == SCHEMA_VERSION == 1


def test_a_record_without_the_version_is_read_as_version_1(tmp_path):
    (tmp_path / RECORD_FILE).write_text(json.dumps({"kind": "train", "run_id": "old"}))
    record = read_run_record(tmp_path)
    assert record["run_id"] == "old" and record[VERSION_KEY] == 1


@pytest.mark.parametrize("version, message", [
    (SCHEMA_VERSION + 1, f"run record schema version {SCHEMA_VERSION + 1} is newer than this embedforge reads"),
    ("1", "format_version must be a positive integer, got '1'"),
    (0, "format_version must be a positive integer, got 0"),
])
def test_unknown_versions_are_refused_in_one_line_naming_the_file(tmp_path, version, message):
    path = tmp_path / RECORD_FILE
    path.write_text(json.dumps({VERSION_KEY: version, "kind": "train"}))
    with pytest.raises(RunRecordError) as exc:
        read_run_record(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("text, message", [
    ('{"kind": "train",\n  oops}', f"{RECORD_FILE}:2: not valid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
])
def test_malformed_records_name_the_file_and_line(tmp_path, text, message):
    (tmp_path / RECORD_FILE).write_text(text)
    with pytest.raises(RunRecordError, match=message):
        read_run_record(tmp_path)
    with pytest.raises(RunRecordError, match="does not exist"):
        read_run_record(tmp_path / "nowhere")


def test_committed_records_are_readable_and_used_by_report_and_export():
    """experiments/*/records hold records of the first schema; report and export read them through the one reader."""
    from embedforge.export.records import scores_from
    from embedforge.report.runs import _read

    paths = sorted(REPO.glob(f"experiments/**/{RECORD_FILE}"))
    assert len(paths) >= 10
    for path in paths:
        record = read_run_record(path)
        assert record[VERSION_KEY] == 1 and record["kind"] in ("train", "evaluate")
        assert _read(path) == record
        if record["kind"] == "evaluate":
            assert scores_from(path, "model_card.scores") == {k: float(v) for k, v in record["results"].items()}


def test_report_and_export_refuse_a_newer_record_naming_the_key_or_file(tmp_path):
    from embedforge.export.records import RecordError, scores_from
    from embedforge.report.runs import ReportInputError, _read

    path = tmp_path / RECORD_FILE
    path.write_text(json.dumps({VERSION_KEY: SCHEMA_VERSION + 1, "kind": "evaluate", "results": {}}))
    with pytest.raises(ReportInputError, match="is newer than this embedforge reads"):
        _read(path)
    with pytest.raises(RecordError, match=r"^model_card.scores: .*is newer than this embedforge reads"):
        scores_from(path, "model_card.scores")
