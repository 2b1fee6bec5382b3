"""Hydra multiruns and searches from the command line, on the tiny decoder: a list of paper
experiments, a glob of them, and an Optuna search; and the W&B sweeps' parameters as overrides."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from embedforge.paths import REPO_ROOT

TINY = ["model=tiny-mistral", "model.pretrained=tiny:mistral", "model.max_length=64", "trainer=cpu",
        "trainer.devices=1", "data.batch_size=4", "data.train_files=[data/demo/train/*.jsonl]", "logger=none",
        "save_encoder=false", "hydra.sweep.subdir=${hydra.job.num}",
        "data.global_batch_size=null"]  # the paper files declare 2048; this is one CPU process of 4


def multirun(tmp_path, *overrides, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-m", "embedforge.cli.train", "-m", *overrides, *TINY,
                          f"paths.output_root={tmp_path}", f"hydra.sweep.dir={tmp_path}/multirun"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return sorted((tmp_path / "multirun").glob("*/.hydra/config.yaml"))


def test_multirun_over_two_paper_experiments(tmp_path):
    configs = multirun(tmp_path, "experiment=paper/ablation_pooling_mean,paper/ablation_lora_r8", "debug=fdr")
    runs = {c["run_name"]: c for c in (yaml.safe_load(p.read_text()) for p in configs)}
    assert set(runs) == {"paper_ablation_pooling_mean", "paper_ablation_lora_r8"}
    assert runs["paper_ablation_pooling_mean"]["pooling"]["mode"] == "mean"
    assert runs["paper_ablation_lora_r8"]["lora"]["r"] == 8


@pytest.mark.slow
def test_multirun_over_a_glob_of_ablations(tmp_path):
    configs = multirun(tmp_path, "experiment=glob(paper/ablation_*)", "debug=fdr")
    names = {yaml.safe_load(p.read_text())["run_name"] for p in configs}
    expected = {f"paper_{p.stem}" for p in (REPO_ROOT / "conf/experiment/paper").glob("ablation_*.yaml")}
    assert names == expected and len(names) == 7


@pytest.mark.slow
def test_optuna_search_runs_trials_and_maximises_the_returned_metric(tmp_path):
    configs = multirun(tmp_path, "experiment=demo", "hparams_search=optuna", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.sampler.n_startup_trials=2", "trainer.max_steps=1", "validate_before_fit=false",
                       "data.val_files=[data/demo/val/sts.jsonl]")
    assert len(configs) == 2
    best = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    assert best["name"] == "optuna" and 0 <= best["best_value"] <= 1


def test_optuna_search_space_is_made_of_training_overrides(compose_train):
    from hydra import compose, initialize_config_dir

    from embedforge.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo", "hparams_search=optuna"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert cfg.optimized_metric == "val/ndcg@10" and set(params) == {"loss.temperature", "optim.lr", "lora", "pooling"}
    compose_train("experiment=demo", "lora=r8", "pooling=weighted_mean", "loss.temperature=0.05", "optim.lr=3e-4")


@pytest.mark.parametrize("sweep_file", ["sweep.yaml", "sweep_mteb.yaml"])
def test_wandb_sweeps_compose_as_training_overrides(compose_train, sweep_file):
    from embedforge.train.settings import TrainSettings

    sweep = yaml.safe_load((REPO_ROOT / sweep_file).read_text())
    fixed = [a for a in sweep["command"] if "=" in a and not a.startswith("$")]
    for name, spec in sweep["parameters"].items():
        for value in spec.get("values", [spec.get("min"), spec.get("max")]):
            TrainSettings.from_config(compose_train(*fixed, f"{name}={value}"))
    metric = sweep["metric"]["name"]
    if sweep_file == "sweep_mteb.yaml":  # the in-training evaluation logs val/<task>/<main score>
        task = metric.split("/")[1]
        cfg = compose_train(*fixed)
        assert list(cfg.callbacks.mteb_eval.tasks) == [task] and cfg.optimized_metric == metric
