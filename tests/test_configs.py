"""Every experiment composes and trains one batch; wrong values fail at start naming the key."""

import glob
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

from embedforge.paths import CONF_DIR
from embedforge.train.settings import TrainConfigError, TrainSettings
from embedforge.train.run import train

EXPERIMENTS = sorted(str(p.relative_to(CONF_DIR / "experiment").with_suffix("")) for p in (CONF_DIR / "experiment").rglob("*.yaml")
                     if not p.name.startswith("_"))
TINY = ["model=tiny-mistral", "model.pretrained=tiny:mistral", "debug=fdr", "data.batch_size=4", "trainer=cpu", "trainer.devices=1",
        "model.gradient_checkpointing=true", "model.max_length=64",
        "data.global_batch_size=null"]  # the batch is shrunk on purpose
BEIR_FIXTURE = Path(__file__).parent / "data" / "fixtures" / "beir_mini"
MTEB_FIXTURE = Path(__file__).parent / "fixtures" / "mteb"


def local_data(cfg) -> list[str]:
    """Overrides that point an experiment's corpus-backed sources at a small fixture, and start it from
    the base model (stage chains are tested in test_stages.py)."""
    overrides = ["model.init_from=null"]
    sources = cfg.data.get("sources") or {}
    if "mteb_eval" in (cfg.get("callbacks") or {}):  # in-training evaluation on the vendored STSBenchmark
        overrides += [f"callbacks.mteb_eval.data_dir={MTEB_FIXTURE}", "callbacks.mteb_eval.tasks=[STSBenchmark]",
                      "callbacks.mteb_eval.subsample=null"]

    def unreachable(source) -> bool:  # public datasets offline; files made from evaluation data (not committed)
        if source.get("type") in ("hub", "synthetic"):
            return True
        return source.get("type") == "jsonl" and not all(glob.glob(str(f)) for f in source.get("files") or [])

    if any(unreachable(source) for source in sources.values()):
        # the demo records stand in, the experiment keeps the rest
        return overrides + ["data.train_files=[data/demo/train/*.jsonl]"]
    for name, source in sources.items():
        if source.get("type") == "beir_title_body":
            overrides.append(f"data.sources.{name}.path={BEIR_FIXTURE}")
    return overrides


def test_there_are_experiments():
    assert "demo" in EXPERIMENTS
    paper = {e for e in EXPERIMENTS if e.startswith("paper/")}
    assert {"paper/full_data", "paper/synthetic_only", "paper/synthetic_msmarco", "paper/msmarco_only",
            "paper/no_synthetic", "paper/ablation_pooling_mean", "paper/ablation_pooling_weighted_mean",
            "paper/ablation_lora_r8", "paper/ablation_lora_r32", "paper/ablation_no_instruction",
            "paper/ablation_task_type_prefix", "paper/ablation_llama2_init", "paper/pretrain_weak",
            "paper/pretrain_then_full_data"} <= paper


@pytest.mark.parametrize("experiment", [e for e in EXPERIMENTS if e.startswith("paper/")])
def test_paper_experiments_keep_the_papers_recipe(compose_train, experiment):
    """Each paper file holds only deltas over the paper's hyperparameters and names the paper's number."""
    cfg = compose_train(f"experiment={experiment}")
    text = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    assert "Paper: " in text and "MTEB avg" in text
    assert cfg.optim.lr == 1e-4 and cfg.optim.warmup_steps == 100 and cfg.optim.weight_decay == 0.1
    assert cfg.loss.temperature == 0.02 and cfg.model.max_length == 512
    assert cfg.data.global_batch_size == 2048
    assert cfg.trainer.devices * cfg.trainer.num_nodes * cfg.data.batch_size == 2048
    ablation = experiment.removeprefix("paper/ablation_")
    assert cfg.pooling.mode == {"pooling_mean": "mean", "pooling_weighted_mean": "weighted_mean"}.get(ablation, "last_token")
    assert cfg.lora.r == {"lora_r8": 8, "lora_r32": 32}.get(ablation, 16)
    assert cfg.model.pretrained == ("meta-llama/Llama-2-7b-hf" if ablation == "llama2_init" else "mistralai/Mistral-7B-v0.1")
    assert cfg.data.instruction_mode == {"no_instruction": "none", "task_type_prefix": "task_type"}.get(ablation, "instruction")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_fast_dev_run_on_cpu(compose_train, experiment):
    """Only the model is swapped for the tiny decoder: the experiment keeps its pooling, LoRA and loss."""
    import math

    own = compose_train(f"experiment={experiment}")
    cfg = compose_train(f"experiment={experiment}", *TINY, *local_data(own))
    record = train(cfg)
    assert record["global_step"] == 1
    encoder = record["encoder"]
    assert encoder["pooling"] == own.pooling.mode and encoder["normalize"] == own.pooling.normalize
    if own.lora.get("enabled"):
        assert encoder["lora"]["r"] == own.lora.r and encoder["lora"]["dropout"] == own.lora.dropout
    else:
        assert encoder["lora"] is None
    assert encoder["max_length"] == cfg.model.max_length
    assert math.isfinite(record["train_metrics"]["train/loss"]) and record["train_metrics"]["train/loss"] > 0


@pytest.mark.parametrize("group", ["model", "lora", "pooling", "loss", "data", "trainer", "logger", "debug"])
def test_every_group_option_composes(compose_train, group):
    for option in sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")):
        cfg = compose_train(f"{group}={option}")
        TrainSettings.from_config(cfg)


@pytest.mark.parametrize("override, key", [
    ("pooling.mode=maxpool", "pooling.mode"),
    ("loss.temperature=0", "loss.temperature"),
    ("loss.temperature=-0.5", "loss.temperature"),
    ("lora.r=0", "lora.r"),
    ("lora.r=-4", "lora.r"),
    ("data.train_files=[does/not/exist.jsonl]", "data.train_files"),
    ("data.hard_negatives=-1", "data.hard_negatives"),
    ("data.instruction_mode=sometimes", "data.instruction_mode"),
    ("data.on_error=ignore", "data.on_error"),
    ("optim.lr=0", "optim.lr"),
])
def test_wrong_values_fail_at_start_naming_the_key(compose_train, override, key):
    cfg = compose_train(override)
    with pytest.raises(Exception) as err:
        train(cfg)
    assert key in str(err.value)
    assert isinstance(err.value, (TrainConfigError, ValueError))


def test_unknown_group_option_is_refused_by_hydra(compose_train):
    with pytest.raises(MissingConfigException, match="pooling"):
        compose_train("pooling=maxpool")


def test_resume_from_missing_last_checkpoint_is_a_clear_error(compose_train, tmp_path):
    cfg = compose_train("ckpt_path=last", *TINY)
    with pytest.raises(TrainConfigError, match="ckpt_path"):
        train(cfg)
    assert not Path(cfg.paths.checkpoint_dir, "last.ckpt").exists()


def test_metrics_table_handles_a_missing_side():
    from embedforge.train.run import format_metrics

    table = format_metrics({}, {"ndcg@10": 0.5})
    assert "ndcg@10" in table and "-" in table and "0.5000" in table
