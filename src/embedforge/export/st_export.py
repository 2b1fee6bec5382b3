"""Export an encoder (folder or training .ckpt) as a sentence-transformers folder.

The folder holds: the merged weights and the tokenizer at its root (sentence-transformers'
Transformer module), 1_Pooling (our pooling mode), 2_Normalize when the encoder normalises, the
query prompts in config_sentence_transformers.json, a model card (README.md), and our own
embedforge_encoder.json. The last makes the same folder an embedforge encoder folder with full
weights, so `embedforge-evaluate checkpoint=<folder>` reads its pooling, normalisation, max length
and instruction mode from it instead of from the command line's pooling/model groups.

Written to a staging folder beside the target and renamed into place at the end, so a failed
export never leaves a half-written model where a finished one is expected.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from embedforge.config_schema import Schema
from embedforge.data.formatting import DEFAULT_QUERY_TEMPLATE, INSTRUCTION_MODES
from embedforge.errors import ConfigError
from embedforge.eval.instructions import InstructionPolicy
from embedforge.export.model_card import render_model_card
from embedforge.export.prompts import build_prompts, mteb_tasks
from embedforge.export.records import RecordError, collect_scores, evaluations_of, find_training_record, read_record
from embedforge.export.tokenizer import check_token_ids, exported_tokenizer
from embedforge.model.encoder import ENCODER_FILE

log = logging.getLogger(__name__)

# Our pooling modes -> sentence-transformers' Pooling modes. Both locate tokens through the attention
# mask (first attended token for cls, weights counted from the first real token for weighted mean),
# so left- and right-padded batches agree with ours.
ST_POOLING = {"last_token": "lasttoken", "mean": "mean", "weighted_mean": "weightedmean", "cls": "cls"}
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

VERIFY_TEXTS = ["A man is playing a guitar.", "how do plants make glucose from sunlight",
                "Der schnelle braune Fuchs springt über den faulen Hund.", "x",
                " ".join(["a long input that is truncated"] * 120)]


class ExportError(ConfigError, RuntimeError):
    """The export cannot be done as configured; the message names the config key."""


class PromptOptions(Schema):
    """`prompts:` of conf/export.yaml."""

    enabled: bool = True
    mode: Literal[INSTRUCTION_MODES] | None = None  # null: the encoder's training instruction mode
    template: str | None = None  # null: the encoder's training template
    task_types: list[str] | None = None  # null: every type of the instruction table
    tasks: list[str] = []
    benchmark: str | None = None
    by_task: dict[str, str] = {}
    by_type: dict[str, str] = {}


@dataclass
class ExportResult:
    folder: Path
    prompts: dict[str, str]
    record: str | None
    score_sources: list[str]
    max_abs_diff: dict[str, float]
    url: str | None = None


def instruction_policy(options: PromptOptions, trained_with: dict) -> InstructionPolicy:
    """The evaluation's policy (conf/evaluate.yaml's tables), with the encoder's training format."""
    base = InstructionPolicy.default()
    return InstructionPolicy(
        mode=options.mode or trained_with.get("instruction_mode") or "instruction",
        template=options.template or trained_with.get("query_template") or DEFAULT_QUERY_TEMPLATE,
        by_task={**base.by_task, **options.by_task}, by_type={**base.by_type, **options.by_type})


def _check_output(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise ExportError(f"output_dir: {out_dir} already exists and is not empty (set overwrite=true to replace it)")
        if out_dir.is_dir() and not (out_dir / ENCODER_FILE).is_file() and not (out_dir / "modules.json").is_file():
            raise ExportError(f"output_dir: {out_dir} is not an earlier export (no modules.json or {ENCODER_FILE}); "
                              "refusing to replace it even with overwrite=true")


def _sentence_transformer(hf_dir: Path, encoder, prompts: dict[str, str], dtype: torch.dtype):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    # Plain text modality only: for a tokenizer with a chat template (SmolLM2, instruct models)
    # sentence-transformers would otherwise render every input through that template.
    transformer = Transformer(str(hf_dir), max_seq_length=encoder.max_length, model_kwargs={"dtype": dtype},
                              modality_config=TEXT_ONLY, module_output_name="token_embeddings")
    modules = [transformer, Pooling(encoder.embedding_dim, pooling_mode=ST_POOLING[encoder.pooling.mode])]
    if encoder.normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, prompts=prompts or None, default_prompt_name=None,
                               similarity_fn_name="cosine", device="cpu")


def check_st_token_ids(model, encoder, folder: Path) -> None:
    """sentence-transformers' own preprocessing (prompt handling, templates, truncation) must give our ids."""
    from embedforge.export.tokenizer import TokenizerExportError
    from embedforge.model.tokenize import token_ids

    features = model.preprocess(VERIFY_TEXTS)
    expected = token_ids(encoder.tokenizer, VERIFY_TEXTS, encoder.max_length)
    for row, (ids, mask) in enumerate(zip(features["input_ids"], features["attention_mask"])):
        got = ids[mask.bool()].tolist()
        if got != expected[row]:
            raise TokenizerExportError(f"{folder}: SentenceTransformer's token ids differ from the encoder's for "
                                       f"{VERIFY_TEXTS[row][:40]!r}: expected ...{expected[row][-5:]} "
                                       f"({len(expected[row])} ids), got ...{got[-5:]} ({len(got)} ids)")


def verify_export(encoder, folder: Path, prompts: dict[str, str]) -> dict[str, float]:
    """Max |difference| between our encoder and SentenceTransformer(folder), without and with a prompt."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    check_st_token_ids(model, encoder, folder)
    ours = encoder.encode(VERIFY_TEXTS, batch_size=8)
    theirs = model.encode(VERIFY_TEXTS, batch_size=8, convert_to_numpy=True, show_progress_bar=False)
    diffs = {"no prompt": float(np.abs(ours - theirs).max())}
    name = next((n for n in ("Retrieval-query", "STS", "Classification") if n in prompts), next(iter(prompts), None))
    if name is not None:
        ours = encoder.encode([prompts[name] + t for t in VERIFY_TEXTS], batch_size=8)
        theirs = model.encode(VERIFY_TEXTS, prompt_name=name, batch_size=8, convert_to_numpy=True,
                              show_progress_bar=False)
        diffs[f"prompt {name}"] = float(np.abs(ours - theirs).max())
    return diffs


def export_encoder(source: str | Path, out_dir: str | Path, *, dtype: str = "float32",
                   prompt_options: PromptOptions | None = None, name: str | None = None,
                   run_record: str | Path | None = None, scores: list[str | Path] | None = None,
                   find_evaluations: bool = True, overwrite: bool = False, verify: bool = True,
                   verify_atol: float = 1e-4) -> ExportResult:
    """Export `source` (encoder folder or .ckpt) to `out_dir`; see the module docstring."""
    from embedforge.model.builder import load_encoder

    source, out_dir = Path(source), Path(out_dir)
    if dtype not in DTYPES:
        raise ExportError(f"dtype: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if not source.exists():
        raise ExportError(f"checkpoint: {source} does not exist")
    _check_output(out_dir, overwrite)
    prompt_options = prompt_options or PromptOptions()

    # Training record and scores first: a wrong path fails before the (slow) model load.
    record_path = Path(run_record) if run_record else find_training_record(source)
    record = read_record(record_path, "model_card.run_record") if record_path else None
    score_files = [Path(p) for p in scores or []]
    if find_evaluations and record is not None:
        score_files = evaluations_of(record.get("run_id"), record_path.parent.parent.parent) + score_files
    collected = collect_scores(score_files)

    encoder = load_encoder(source, dtype="float32").eval()  # merge in fp32, cast at the end
    trained_with = encoder.trained_with or {}
    prompts: dict[str, str] = {}
    if prompt_options.enabled:
        policy = instruction_policy(prompt_options, trained_with)
        prompts = build_prompts(policy, mteb_tasks(prompt_options.tasks, prompt_options.benchmark),
                                prompt_options.task_types)
    merged = encoder.merged()
    tokenizer = exported_tokenizer(encoder.tokenizer, encoder.max_length)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        hf_dir, st_dir = staging / "hf", staging / "export"
        merged.backbone.to(DTYPES[dtype]).save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        model = _sentence_transformer(hf_dir, encoder, prompts, DTYPES[dtype])
        model.save(str(st_dir))
        del model
        from transformers import AutoTokenizer

        check_token_ids(encoder.tokenizer, AutoTokenizer.from_pretrained(st_dir), encoder.max_length,
                        where=f"{out_dir} (tokenizer as saved)")
        describe = {**merged.describe(), "base_encoder": None, "lora": None,
                    "exported": {"from": str(source.resolve()), "lora": None if encoder.lora is None else vars(encoder.lora),
                                 "base_encoder": encoder.base_encoder, "dtype": dtype, "format": "sentence-transformers"}}
        (st_dir / ENCODER_FILE).write_text(json.dumps(describe, indent=2))
        card = render_model_card(
            name=name or out_dir.name, describe=describe, exported=describe["exported"], prompts=prompts,
            record=record, record_path=str(record_path) if record_path else None, scores=collected.scores,
            score_sources=collected.sources, path_hint=str(out_dir))
        (st_dir / "README.md").write_text(card, encoding="utf-8")
        diffs = {}
        if verify:
            diffs = verify_export(encoder, st_dir, prompts)
            worst = max(diffs.values())
            if dtype == "float32" and worst > verify_atol:
                raise ExportError(f"verify: SentenceTransformer({out_dir}) differs from the encoder by {worst:.2e} "
                                  f"(> verify_atol={verify_atol}): {diffs}")
        if out_dir.exists():
            shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
        st_dir.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s -> %s (%d prompts)", source, out_dir, len(prompts))
    return ExportResult(folder=out_dir, prompts=prompts, record=str(record_path) if record_path else None,
                        score_sources=collected.sources, max_abs_diff=diffs)


__all__ = ["ExportError", "ExportResult", "PromptOptions", "RecordError", "export_encoder", "verify_export"]
