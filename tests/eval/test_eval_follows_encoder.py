"""Evaluation follows the encoder: the instruction mode and template it was trained with, unless the
command line overrides them; the task-type prefixes match training's; truncation; the device key."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from embedforge.eval.inputs import encoder_for_evaluation
from embedforge.eval.settings import EvaluateJob
from embedforge.cli.evaluate import run
from embedforge.data.collate import ContrastiveCollator
from embedforge.data.schema import Example
from embedforge.model.builder import encoder_from_pretrained
from embedforge.model.encoder import Encoder
from embedforge.paths import CONF_DIR


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


@pytest.fixture
def spy(monkeypatch):
    """Every text the encoder receives during evaluation."""
    seen: list[str] = []
    original = Encoder.encode

    def encode(self, texts, **kwargs):
        seen.extend(texts)
        return original(self, texts, **kwargs)

    monkeypatch.setattr(Encoder, "encode", encode)
    return seen


def _saved(tmp_path, tiny_mistral_path, **trained_with):
    encoder = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", dtype="float32")
    encoder.trained_with = {"run_id": "stage/run", **trained_with}
    return encoder.save(tmp_path / "enc")


def test_encoder_trained_without_instructions_is_evaluated_without(tmp_path, tiny_mistral_path, tasks_root, fx, spy):
    folder = _saved(tmp_path, tiny_mistral_path, instruction_mode="none")
    run(_cfg([f"checkpoint={folder}", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]", f"output_dir={tmp_path}/r"]))
    assert set(spy) == {r[0] for r in fx.STS_ROWS} | {r[1] for r in fx.STS_ROWS}


def test_recorded_template_is_used_and_the_command_line_wins(tmp_path, tiny_mistral_path, tasks_root, spy):
    folder = _saved(tmp_path, tiny_mistral_path, instruction_mode="instruction", query_template="<{instruction}> {query}")
    base = [f"checkpoint={folder}", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]", f"output_dir={tmp_path}/r"]
    run(_cfg(base))
    assert spy and all(t.startswith("<Retrieve semantically similar text.> ") for t in spy)
    spy.clear()
    run(_cfg(base + ["instructions.mode=none"]))
    assert not any(t.startswith("<") for t in spy)


def test_task_type_prefixes_are_the_same_in_training_and_evaluation(tmp_path, tiny_mistral_path, tasks_root, fx, spy):
    folder = _saved(tmp_path, tiny_mistral_path, instruction_mode="task_type")
    base = [f"checkpoint={folder}", f"eval.data_dir={tasks_root}", f"output_dir={tmp_path}/r"]
    run(_cfg(base + ["eval.tasks=[MyClassification]"]))
    assert spy and all(t.startswith("classify: ") for t in spy)
    spy.clear()
    run(_cfg(base + ["eval.tasks=[MyRetrieval]"]))
    queries = {"query: " + q for q in fx.QUERIES.values()}
    assert queries <= set(spy) and not any(t.startswith(("query: ", "classify: ")) for t in set(spy) - queries)
    spy.clear()
    run(_cfg(base + ["eval.tasks=[MySTS]"]))
    assert set(spy) == {r[0] for r in fx.STS_ROWS} | {r[1] for r in fx.STS_ROWS}  # symmetric: no prefix

    # training formats the same task types the same way
    records = [Example("Classify the sentiment", "great film", "positive", [], "long_short"),
               Example("Find the passage", "capital of France", "Paris.", [], "short_long"),
               Example("Retrieve semantically similar text.", "a cat sleeps", "a cat naps", [], "sts")]
    encoder = encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={folder}"])))
    batch = ContrastiveCollator(encoder.tokenizer, hard_negatives=0, instruction_mode="task_type")(records)
    texts = encoder.tokenizer.batch_decode(batch["query_input_ids"], skip_special_tokens=True)
    assert [t.strip() for t in texts] == ["classify: great film", "query: capital of France", "a cat sleeps"]


def test_truncate_dim_keeps_the_first_dimensions_normalised(tmp_path, tiny_mistral_path, tasks_root):
    encoder = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", dtype="float32")
    texts = ["one text", "another, longer text here"]
    full = encoder.encode(texts, normalize=False)
    cut = encoder.encode(texts, dim=8)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    assert cut.shape == (2, 8) and np.allclose(cut, expected, atol=1e-5)
    with pytest.raises(ValueError, match="truncate_dim"):
        encoder.encode(texts, dim=encoder.embedding_dim + 1)

    folder = encoder.save(tmp_path / "enc")
    base = [f"checkpoint={folder}", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]", f"output_dir={tmp_path}/r"]
    full_run, cut_run = run(_cfg(base)), run(_cfg(base + ["eval.truncate_dim=8"]))
    assert full_run.parent != cut_run.parent  # results of a truncated embedding get their own folder
    assert json.loads((cut_run.parent / "model_meta.json").read_text())["truncate_dim"] == 8
    with pytest.raises(ValueError, match="eval.truncate_dim"):
        run(_cfg(base + ["eval.truncate_dim=-3"]))


def test_device_key(tmp_path, tiny_mistral_path):
    import torch

    folder = _saved(tmp_path, tiny_mistral_path)
    assert encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={folder}", "device=cpu"]))).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={folder}", "device=cuda"])))


def test_encoder_max_length_replaces_the_training_length(tmp_path, tiny_mistral_path, tasks_root, spy):
    """A folder trained on short inputs keeps max_length 16; encoder_max_length evaluates it at another
    length (eval.max_length still caps it), with results in a folder of their own."""
    encoder = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", dtype="float32", max_length=16)
    folder = encoder.save(tmp_path / "enc")
    assert encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={folder}"]))).max_length == 16
    assert encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={folder}", "encoder_max_length=128"]))).max_length == 128
    base = [f"checkpoint={folder}", f"eval.data_dir={tasks_root}", "eval.tasks=[MySTS]", f"output_dir={tmp_path}/r"]
    short, long = run(_cfg(base)), run(_cfg(base + ["encoder_max_length=128", "eval.max_length=64"]))
    assert short.parent != long.parent
    assert json.loads((short.parent / "model_meta.json").read_text())["max_length"] == 16
    assert json.loads((long.parent / "model_meta.json").read_text())["max_length"] == 64
    with pytest.raises(ValueError, match="encoder_max_length"):
        encoder_for_evaluation(EvaluateJob.from_config(_cfg([f"checkpoint={folder}", "encoder_max_length=0"])))
