"""Run records: one format for training and evaluation, complete, without secrets, written once."""

import json
from importlib import metadata

import pytest
from embedforge.run_record import RECORD_FILE, build_run_record, read_run_record, write_run_record
from embedforge.train.run import train

TINY = ["model=tiny-mistral", "pooling=last_token", "lora=r8", "data.batch_size=8", "data.max_train_examples=16",
        "data.val_files=null", "validate_before_fit=false", "trainer.max_steps=2"]


def test_training_record_is_complete(compose_train, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDFORGE_TEST_API_KEY", "sk-do-not-log-me")
    cfg = compose_train(*TINY, "run_name=rec", "+synth_client.api_key=${oc.env:EMBEDFORGE_TEST_API_KEY}")
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
