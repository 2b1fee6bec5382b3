"""The training entry point's typed config boundary (train/settings.py): one check of the composed
config, unknown keys refused by name in every group, GradCache's consequences decided in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from embedforge.errors import ConfigError
from embedforge.train.settings import TrainConfigError, TrainSettings

SRC = Path(__file__).resolve().parents[1] / "src" / "embedforge"


@pytest.mark.parametrize("override, key", [
    ("+typo_top=1", "typo_top"),
    ("+model.max_len=64", "model.max_len"),
    ("+lora.use_dorra=true", "lora.use_dorra"),
    ("+pooling.norm=true", "pooling.norm"),
    ("+data.batchsize=8", "data.batchsize"),
    ("+data.sources.demo.file=x.jsonl", "data.sources.demo.file"),
    ("+loss.temprature=0.05", "loss.temprature"),
    ("+optim.momentum=0.9", "optim.momentum"),
    ("+optim.scheduler.warmup=3", "optim.scheduler.warmup"),
    ("+trainer.max_step=10", "trainer.max_step"),
    ("+callbacks.model_checkpoint.every_n_step=5", "callbacks.model_checkpoint.every_n_step"),
    ("+paths.out=x", "paths.out"),
])
def test_an_unknown_key_in_any_group_is_refused_naming_it(compose_train, override, key):
    with pytest.raises(TrainConfigError) as err:
        TrainSettings.from_config(compose_train("experiment=demo", override))
    message = str(err.value)
    assert message.startswith(f"config key '{key}'") and "\n" not in message, message


@pytest.mark.parametrize("override, key", [
    ("lora.r=0", "lora.r"),
    ("lora.r=true", "lora.r"),
    ("lora.dropout=1.5", "lora.dropout"),
    ("pooling.mode=maxpool", "pooling.mode"),
    ("model.init_mode=fork", "model.init_mode"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.hard_negatives=-1", "data.hard_negatives"),
    ("data.num_workers=many", "data.num_workers"),
    ("data.sources.demo.ratio=0", "data.sources.demo.ratio"),
    ("optim.lr=0", "optim.lr"),
    ("loss.temperature=0", "loss.temperature"),
    ("loss.grad_cache.chunk_size=0", "loss.grad_cache.chunk_size"),
])
def test_a_bad_value_is_refused_naming_its_key(compose_train, override, key):
    with pytest.raises(ConfigError) as err:
        TrainSettings.from_config(compose_train("experiment=demo", override))
    assert str(err.value).startswith(f"config key '{key}'") and "\n" not in str(err.value), str(err.value)


def test_grad_cache_consequences_are_decided_once(compose_train):
    plain = TrainSettings.from_config(compose_train("model=tiny-mistral", "model.gradient_checkpointing=true"))
    assert plain.encoder.model.gradient_checkpointing and plain.trainer["gradient_clip_val"] == 1.0
    assert plain.module().gradient_clip_val is None

    cached = TrainSettings.from_config(compose_train("model=tiny-mistral", "model.gradient_checkpointing=true",
                                                     "loss.grad_cache.chunk_size=4"))
    # GradCache recomputes anyway: checkpointing off; the module clips, Lightning must not.
    assert not cached.encoder.model.gradient_checkpointing and not cached.module().encoder.gradient_checkpointing
    assert cached.trainer["gradient_clip_val"] is None and cached.module().gradient_clip_val == 1.0
    assert cached.resolved["model"]["gradient_checkpointing"] is False  # what the record and checkpoints say
    kept = TrainSettings.from_config(compose_train("model=tiny-mistral", "model.gradient_checkpointing=true",
                                                   "loss.grad_cache.chunk_size=4", "model.checkpointing_with_grad_cache=true"))
    assert kept.encoder.model.gradient_checkpointing
    with pytest.raises(TrainConfigError, match=r"^config key 'trainer\.accumulate_grad_batches': must be 1"):
        TrainSettings.from_config(compose_train("model=tiny-mistral", "loss.grad_cache.chunk_size=4",
                                                "trainer.accumulate_grad_batches=2"))


def test_the_module_takes_settings_not_the_config(compose_train):
    from embedforge.train.module import EmbeddingModule

    settings = TrainSettings.from_config(compose_train("model=tiny-mistral", "data.instruction_mode=none"))
    module = EmbeddingModule(settings.module(run_id="r/1"))
    assert not hasattr(module, "cfg")
    assert module.trained_with == {"instruction_mode": "none", "query_template": settings.data.query_template,
                                   "run_id": "r/1", "parent_run_id": None}
    # checkpoints keep the resolved config, from which builder.load_encoder rebuilds the encoder
    assert module.hparams["cfg"]["model"]["pretrained"] == "tiny:mistral"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_model_layer_knows_nothing_of_data_or_configs():
    for path in sorted((SRC / "model").glob("*.py")):
        imports = _imports(path)
        assert not any(name.startswith(("embedforge.data", "embedforge.train")) for name in imports), path
        assert "omegaconf" not in imports, path
        assert "cfg.data" not in path.read_text(encoding="utf-8"), path
