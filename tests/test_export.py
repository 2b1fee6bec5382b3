"""embedforge-export: the sentence-transformers folder embeds exactly like our encoder.

References are independent of the export: our Encoder.encode on texts formatted by the evaluation's
InstructionPolicy (what embedforge-evaluate feeds the encoder), and our own tokenisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from embedforge.eval.instructions import InstructionPolicy
from embedforge.model.builder import EncoderSettings, build_encoder, load_encoder
from embedforge.model.lora import LoraSettings
from embedforge.paths import CONF_DIR

TEXTS = ["A man is playing a guitar.", "how do plants make glucose from sunlight",
         "Der schnelle braune Fuchs springt über den faulen Hund.", "x",
         " ".join(["a long input that the tokenizer has to truncate"] * 80)]
TRAINED_WITH = {"instruction_mode": "instruction", "query_template": None, "run_id": "demo/t1", "parent_run_id": None}


def _lora_encoder(pretrained: str, pooling: str, max_length: int, seed: int = 0):
    """A LoRA encoder whose adapter is not a no-op (fresh LoRA B is zero: merging would prove nothing)."""
    torch.manual_seed(seed)
    encoder = build_encoder(EncoderSettings(pretrained=pretrained, pooling=pooling, max_length=max_length,
                                            lora=LoraSettings(r=4, alpha=8, dropout=0.0), dtype="float32",
                                            trained_with=dict(TRAINED_WITH)))
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    return encoder.eval()


def _export_cfg(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("export", overrides=overrides)


def _write_records(run_dir: Path, runs_root: Path) -> None:
    """A training record beside the encoder and an evaluation record that names its run id."""
    (run_dir / "run_record.json").write_text(json.dumps({
        "format_version": 1, "kind": "train", "run_name": "demo", "run_id": "demo/t1", "parent_run": None,
        "wandb_run_id": None, "data": {"sources": {"demo": 280}, "total": 280}, "global_step": 32,
        "val_before": {"val/ndcg@10": 0.79}, "val_after": {"val/ndcg@10": 0.89}, "wall_time_s": 134.0,
        "config": {"lora": {"r": 4, "alpha": 8}, "loss": {"temperature": 0.02}}, "git": {"sha": "abc123", "dirty": False}}))
    evaluation = runs_root / "evaluate" / "2026-01-01_00-00-00"
    evaluation.mkdir(parents=True)
    (evaluation / "run_record.json").write_text(json.dumps({
        "kind": "evaluate", "evaluated": "demo/t1", "results": {"STSBenchmark": 81.25, "SciFact": 64.5}}))
    other = runs_root / "evaluate" / "2026-01-02_00-00-00"
    other.mkdir(parents=True)
    (other / "run_record.json").write_text(json.dumps({"kind": "evaluate", "evaluated": "other/run", "results": {"X": 1.0}}))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_mistral_path):
    """Tiny Mistral + LoRA, last-token pooling, exported through the CLI's run() with a run record beside it."""
    from embedforge.cli.export import run

    root = tmp_path_factory.mktemp("export_tiny")
    run_dir = root / "runs" / "demo" / "t1"
    encoder = _lora_encoder(str(tiny_mistral_path), "last_token", 32)
    encoder.pretrained = "tiny:mistral"
    folder = encoder.save(run_dir / "encoder")
    _write_records(run_dir, root / "runs")
    result = run(_export_cfg([f"checkpoint={folder}", "prompts.benchmark=null", "prompts.tasks=[SciFact,Banking77Classification]"]))
    return encoder, result


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    from embedforge.export.st_export import PromptOptions, export_encoder

    root = tmp_path_factory.mktemp("export_minilm")
    encoder = _lora_encoder("embedded:all-MiniLM-L6-v2", "mean", 128)
    folder = encoder.save(root / "encoder")
    result = export_encoder(folder, root / "st", prompt_options=PromptOptions(tasks=["SciFact"]), verify=False)
    return encoder, result


def _st(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def _task_metadata(name, task_type=None):
    """mteb's metadata of a real task, or of a task of `task_type` without a prompt of its own."""
    if task_type:
        from types import SimpleNamespace

        return SimpleNamespace(name=name, type=task_type, prompt=None)
    import mteb

    return mteb.get_task(name).metadata


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_sentence_transformer_equals_encoder_with_and_without_prompts(which, request):
    encoder, result = request.getfixturevalue(which)
    model = _st(result.folder)
    plain = model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(plain, encoder.encode(TEXTS), atol=1e-5)
    policy = InstructionPolicy.default()  # the evaluation's formatting is the reference
    for prompt_name, metadata, side in [("STS", _task_metadata("STSBenchmark"), None),
                                        ("Retrieval-query", _task_metadata("MyRetrieval", "Retrieval"), "query"),
                                        ("SciFact-query", _task_metadata("SciFact"), "query")]:
        reference = encoder.encode(policy.format(TEXTS, metadata, side))
        got = model.encode(TEXTS, prompt_name=prompt_name, convert_to_numpy=True)
        np.testing.assert_allclose(got, reference, atol=1e-5, err_msg=prompt_name)
        assert np.abs(got - plain).max() > 1e-3, "the prompt should change the embedding"
    assert model.max_seq_length == encoder.max_length


def test_last_token_export_appends_eos_and_is_padding_invariant(tiny):
    encoder, result = tiny
    model = _st(result.folder)
    eos = encoder.tokenizer.eos_token_id
    features = model.tokenize(TEXTS)
    last = features["attention_mask"].shape[1] - 1 - features["attention_mask"].flip(1).int().argmax(1)
    assert (features["input_ids"][torch.arange(len(TEXTS)), last] == eos).all()
    assert int(features["attention_mask"][-1].sum()) == encoder.max_length  # truncated input keeps EOS in length
    right = model.encode(TEXTS, convert_to_numpy=True)
    model.tokenizer.padding_side = "left"
    np.testing.assert_allclose(model.encode(TEXTS, convert_to_numpy=True), right, atol=1e-5)
    assert json.loads((result.folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "lasttoken"
    assert (result.folder / "2_Normalize").is_dir()


def test_cli_verified_and_wrote_beside_the_run(tiny):
    encoder, result = tiny
    assert result.folder.name == "sentence-transformers" and result.folder.parent.name == "t1"
    assert result.max_abs_diff and max(result.max_abs_diff.values()) < 1e-5
    meta = json.loads((result.folder / "embedforge_encoder.json").read_text())
    assert meta["lora"] is None and meta["exported"]["lora"]["r"] == 4 and meta["pooling"] == "last_token"
    assert meta["trained_with"]["instruction_mode"] == "instruction"


def test_model_card_holds_record_mixture_and_matching_scores_only(tiny):
    _, result = tiny
    card = (result.folder / "README.md").read_text()
    assert "library_name: sentence-transformers" in card
    assert "Needs `sentence-transformers>=5.4`" in card  # what the exported folder's config needs
    assert '"demo": 280' in card  # data mixture from the training record
    assert "| STSBenchmark | 81.25 |" in card and "| SciFact | 64.50 |" in card
    assert "| X |" not in card  # an evaluation of another run is not listed
    assert "| W&B run id | not recorded |" in card
    assert "temperature: 0.02" in card and "abc123" in card


def _local_tasks(root: Path) -> Path:
    """An STS task and a retrieval task in our local-folder format (SciFact metadata: its own prompt)."""
    def jsonl(path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    sts = root / "MySTS"
    jsonl(sts / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in [
        ("A man is playing a guitar.", "A man plays the guitar.", 4.8), ("A dog runs.", "A cat sleeps.", 0.4),
        ("The market fell.", "Share prices dropped.", 4.0), ("He cooks pasta.", "The train is late.", 0.1),
        ("A plane takes off.", "An airplane departs.", 4.5), ("She reads.", "She writes a letter.", 1.8)]])
    (sts / "task.json").write_text(json.dumps({"mteb_task": None, "type": "STS", "splits": ["test"]}))
    ret = root / "SciFact"
    docs = {"d1": "Plants turn sunlight into glucose.", "d2": "Magma erupts as lava.", "d3": "Eleven players per team.",
            "d4": "Savings accounts pay interest."}
    jsonl(ret / "corpus.jsonl", [{"_id": k, "title": "", "text": v} for k, v in docs.items()])
    jsonl(ret / "queries.jsonl", [{"_id": "q1", "text": "how do plants make sugar"}, {"_id": "q2", "text": "volcano output"},
                                  {"_id": "q3", "text": "football team size"}])
    (ret / "qrels").mkdir()
    (ret / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    (ret / "task.json").write_text(json.dumps({"mteb_task": "SciFact", "type": "Retrieval", "splits": ["test"]}))
    return root


def test_mteb_wrapper_on_the_folder_scores_like_our_evaluation(tiny, tmp_path):
    import mteb
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    from embedforge.eval.results import main_score
    from embedforge.eval.runner import resolve_tasks, run_tasks

    encoder, result = tiny
    tasks = resolve_tasks(data_dir=_local_tasks(tmp_path / "tasks"))
    ours = run_tasks(encoder, tasks, policy=InstructionPolicy.default(), max_length=encoder.max_length)
    wrapper = SentenceTransformerEncoderWrapper(str(result.folder))
    for task, our_result in zip(tasks, ours.results):
        theirs = mteb.evaluate(wrapper, task, cache=None, overwrite_strategy="always", co2_tracker=False,
                               show_progress_bar=False, raise_error=True).task_results[0]
        assert main_score(theirs) == pytest.approx(main_score(our_result), abs=1e-3), task.metadata.name


@pytest.mark.parametrize("which", ["tiny", pytest.param("minilm", marks=pytest.mark.slow)])
def test_evaluate_cli_on_export_equals_encoder_folder(which, request, tmp_path):
    from embedforge.cli.evaluate import run

    encoder, result = request.getfixturevalue(which)
    tasks = _local_tasks(tmp_path / "tasks")

    def evaluate(checkpoint, out):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"checkpoint={checkpoint}", f"eval.data_dir={tasks}",
                                                 f"output_dir={tmp_path / out}", "device=cpu"])
        return json.loads(Path(run(cfg)).read_text())

    source = json.loads((result.folder / "embedforge_encoder.json").read_text())["exported"]["from"]
    on_encoder, on_export = evaluate(source, "enc"), evaluate(result.folder, "exp")
    assert set(on_export) == {"MySTS", "SciFact"}
    for task, score in on_encoder.items():
        assert on_export[task] == pytest.approx(score, abs=1e-3), task


def test_export_from_training_checkpoint(tmp_path, compose_train):
    from omegaconf import OmegaConf

    from embedforge.export.job import default_output_dir
    from embedforge.export.st_export import PromptOptions, export_encoder
    from embedforge.model.settings import EncoderGroups

    cfg = compose_train("experiment=demo", "model=tiny-mistral", "lora=r8", "pooling=last_token", "model.max_length=32")
    encoder = build_encoder(EncoderGroups.from_config(cfg).settings(for_training=True))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    state = {f"encoder.{n}": p.detach().clone() for n, p in encoder.named_parameters() if p.requires_grad}
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"hyper_parameters": {"cfg": OmegaConf.to_container(cfg, resolve=True)}, "state_dict": state}, ckpt)
    out = default_output_dir(ckpt)
    assert out == tmp_path / "run" / "sentence-transformers"
    result = export_encoder(ckpt, out, prompt_options=PromptOptions(enabled=False), verify=False)
    reference = load_encoder(ckpt)
    np.testing.assert_allclose(_st(out).encode(TEXTS, convert_to_numpy=True), reference.encode(TEXTS), atol=1e-5)
    assert result.prompts == {} and "no run_record.json" in (out / "README.md").read_text()


# ---------------------------------------------------------------------------------------------- prompts
def test_prompts_are_the_prefix_of_our_query_format():
    from embedforge.data.formatting import format_query
    from embedforge.export.prompts import TaskInfo, build_prompts

    policy = InstructionPolicy.default()
    meta = _task_metadata("SciFact")
    prompts = build_prompts(policy, [TaskInfo(meta.name, meta.type, meta)])
    assert prompts["SciFact-query"] + "q?" == format_query("q?", meta.prompt if isinstance(meta.prompt, str)
                                                          else meta.prompt["query"], policy.template)
    assert "SciFact" not in prompts and "Retrieval" not in prompts  # documents must never match a prompt
    assert prompts["STS"] == "Instruct: Retrieve semantically similar text.\nQuery: "
    assert prompts["query"] == prompts["Retrieval-query"]


def test_prompt_modes_none_task_type_and_bad_template():
    from embedforge.export.prompts import PromptExportError, build_prompts

    assert build_prompts(InstructionPolicy(mode="none"), []) == {}
    task_type = build_prompts(InstructionPolicy(mode="task_type"), [])
    assert task_type["Classification"] == "classify: " and task_type["Retrieval-query"] == "query: "
    assert "STS" not in task_type  # symmetric tasks get no prefix in the paper's ablation
    with pytest.raises(PromptExportError, match="after \\{query\\}"):
        build_prompts(InstructionPolicy(template="Query: {query}\nInstruct: {instruction}", by_type={"STS": "x"}), [])


# ---------------------------------------------------------------------------------------------- errors
def test_refuses_to_overwrite_and_needs_a_checkpoint(tmp_path):
    from embedforge.cli.export import run
    from embedforge.export.st_export import ExportError, export_encoder

    with pytest.raises(ValueError, match="config key .checkpoint."):
        run(_export_cfg([]))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="output_dir: .* already exists"):
        export_encoder(tmp_path, tmp_path / "out")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_encoder(tmp_path, tmp_path / "out", overwrite=True)
    with pytest.raises(ExportError, match="checkpoint: .* does not exist"):
        export_encoder(tmp_path / "absent", tmp_path / "new")


def test_malformed_run_record_names_file_and_line(tmp_path):
    from embedforge.export.records import RecordError
    from embedforge.export.st_export import export_encoder

    (tmp_path / "encoder").mkdir()
    (tmp_path / "run_record.json").write_text('{"kind": "train",\n "run_id": }\n')
    with pytest.raises(RecordError, match=r"run_record.json:2: not valid JSON"):
        export_encoder(tmp_path / "encoder", tmp_path / "out")


def test_upload_offline_fails_naming_the_repo(tmp_path, monkeypatch):
    from embedforge.export.hub import HubUploadError, upload_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_never_shown")
    with pytest.raises(HubUploadError, match="me/my-embedder") as err:
        upload_folder(tmp_path, "me/my-embedder")
    assert "hf_secret_value_never_shown" not in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize("pooling", ["weighted_mean", "cls"])
def test_other_pooling_modes_export_exactly_with_left_padding(pooling, tmp_path, tiny_mistral_path):
    from embedforge.export.st_export import PromptOptions, export_encoder

    encoder = _lora_encoder(str(tiny_mistral_path), pooling, 32, seed=2)
    result = export_encoder(encoder.save(tmp_path / "encoder"), tmp_path / "st", prompt_options=PromptOptions(enabled=False),
                            verify=False)
    model = _st(result.folder)
    assert json.loads((result.folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == pooling.replace("_", "")
    reference = encoder.encode(TEXTS)
    for side in ("right", "left"):
        model.tokenizer.padding_side = side
        np.testing.assert_allclose(model.encode(TEXTS, convert_to_numpy=True), reference, atol=1e-5, err_msg=side)


def test_tokenizer_with_chat_template_is_not_rendered_as_chat(tmp_path, tiny_mistral_path):
    """Instruct models ship a chat template; sentence-transformers must still embed the plain text."""
    from embedforge.export.st_export import PromptOptions, export_encoder

    import shutil

    from transformers import AutoTokenizer

    base = tmp_path / "tiny-with-chat-template"
    shutil.copytree(tiny_mistral_path, base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = "{% for m in messages %}<s>user {{ m['content'] }}</s>{% endfor %}"
    tokenizer.save_pretrained(base)
    encoder = _lora_encoder(str(base), "last_token", 32, seed=3)
    assert encoder.tokenizer.chat_template
    result = export_encoder(encoder.save(tmp_path / "encoder"), tmp_path / "st", prompt_options=PromptOptions(enabled=False),
                            verify=False)
    model = _st(result.folder)
    assert model.tokenizer.chat_template  # kept for whoever wants it, but not used for embedding
    assert list(json.loads((result.folder / "sentence_bert_config.json").read_text())["modality_config"]) == ["text"]
    np.testing.assert_allclose(model.encode(TEXTS, convert_to_numpy=True), encoder.encode(TEXTS), atol=1e-5)
