"""embedforge-sweep-offline: the W&B sweep files validate against W&B's sweep schema without the server,
and one agent trial runs offline with the sampled parameters, its metric read back from the run record."""

import json
import os
import sys

import pytest
import yaml

from embedforge.cli.sweep_offline import SweepFileError, load_sweep, main, trial_command
from embedforge.paths import REPO_ROOT

TINY = ["model=tiny-mistral", "model.pretrained=tiny:mistral", "model.max_length=32", "trainer.max_steps=1",
        "data.batch_size=4", "validate_before_fit=false", "data.val_files=[data/demo/val/sts.jsonl]", "save_encoder=false"]


@pytest.mark.parametrize("name", ["sweep.yaml", "sweep_mteb.yaml"])
def test_sweep_files_are_valid_sweeps(name):
    assert main([str(REPO_ROOT / name), "--validate-only"]) == 0


def test_broken_sweep_is_refused_naming_the_file(tmp_path, capsys):
    config = yaml.safe_load((REPO_ROOT / "sweep.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config, "method": "annealing"}))
    with pytest.raises(SweepFileError, match=r"bad.yaml: not a valid sweep: .*annealing"):
        load_sweep(bad)
    assert main([str(bad), "--validate-only"]) == 2 and "bad.yaml" in capsys.readouterr().err
    no_metric = tmp_path / "no_metric.yaml"
    no_metric.write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "metric"} | {"method": "random"}))
    with pytest.raises(SweepFileError, match="no_metric.yaml: metric.name"):
        load_sweep(no_metric)


def test_command_macros_are_filled_like_the_wandb_agent(tmp_path):
    config = {"program": "embedforge-train", "command": ["${env}", "${program}", "experiment=demo", "${args_no_hyphens}"]}
    command = trial_command(config, {"lora": "r8", "optim.lr": 0.001}, ["debug=fdr"], tmp_path / "s.yaml")
    assert command[0].endswith("embedforge-train") and command[1:] == ["experiment=demo", "lora=r8", "optim.lr=0.001", "debug=fdr"]
    with pytest.raises(SweepFileError, match=r"s.yaml: command: \${args_json}"):
        trial_command({"program": "p", "command": ["${program}", "${args_json}"]}, {}, [], tmp_path / "s.yaml")


def test_one_agent_trial_runs_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the tool itself keeps W&B offline
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "argv", ["embedforge-sweep-offline"])
    out = tmp_path / "sweep"
    code = main([str(REPO_ROOT / "sweep.yaml"), "--trials", "1", "--out", str(out), "--", *TINY,
                 f"paths.output_root={tmp_path}"])
    assert code == 0
    results = json.loads((out / "sweep_results.json").read_text())
    (trial,) = results["trials"]
    record = json.loads((out / "trial_0" / "run_record.json").read_text())
    # the run trained with the sampled parameters, offline, and its metric is the record's
    params = trial["params"]
    assert set(params) == {"lora", "pooling", "loss.temperature", "optim.lr"}
    assert record["config"]["pooling"]["mode"] == params["pooling"]
    assert record["config"]["lora"]["r"] == int(params["lora"].removeprefix("r"))
    assert record["config"]["loss"]["temperature"] == params["loss.temperature"]
    assert record["config"]["optim"]["lr"] == pytest.approx(params["optim.lr"])
    assert trial["value"] == record["val_after"]["val/ndcg@10"]
    assert list((out / "trial_0" / "wandb").glob("offline-run-*")), "the trial's W&B run is an offline run"
    assert "WANDB_MODE" not in os.environ
