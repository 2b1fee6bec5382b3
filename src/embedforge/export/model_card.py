"""README.md of an exported model: how to use it, how it was made, and what it scored.

Everything comes from the encoder's own description and the run records found beside it; a field
that no record holds is written as "not recorded", never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

NOT_RECORDED = "not recorded"

# Training config groups worth showing in full (the rest is in the run record itself).
CONFIG_SECTIONS = ("model", "lora", "pooling", "loss", "optim", "data", "trainer")


def _front_matter(describe: dict, name: str, base_model: str | None) -> str:
    lines = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity", "tags:",
             "- sentence-transformers", "- feature-extraction", "- embedforge"]
    if base_model:
        lines.append(f"base_model: {base_model}")
    lines += ["---", ""]
    return "\n".join(lines)


def hub_base_model(pretrained: str) -> str | None:
    """The hub id of the base model, when `pretrained` is one (not a local path or an embedded name)."""
    if not pretrained or ":" in pretrained or pretrained.startswith((".", "/", "~")) or Path(pretrained).exists():
        return {"embedded:all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
                "embedded:smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}.get(pretrained)
    return pretrained if pretrained.count("/") == 1 else None


def _usage(path_hint: str, prompts: dict[str, str]) -> str:
    example = next((n for n in ("Retrieval-query", "STS", "Classification") if n in prompts), None)
    # The folder's sentence_bert_config.json uses keys (modality_config, module_output_name) from 5.4 on.
    lines = ["## Usage", "", "Needs `sentence-transformers>=5.4`.", "", "```python",
             "from sentence_transformers import SentenceTransformer", "",
             f'model = SentenceTransformer("{path_hint}")']
    if example:
        lines += [f'queries = model.encode(["how do plants make sugar?"], prompt_name="{example}")',
                  'documents = model.encode(["Photosynthesis turns light, water and CO2 into glucose."])',
                  "print(model.similarity(queries, documents))"]
    else:
        lines += ['embeddings = model.encode(["first text", "second text"])',
                  "print(model.similarity(embeddings, embeddings))"]
    lines += ["```", "", "MTEB, through its sentence-transformers wrapper (it picks the prompt by task name, then by task type):", "",
              "```python", "import mteb", "", "from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper", "",
              f'model = SentenceTransformerEncoderWrapper("{path_hint}")',
              'results = mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))', "```", ""]
    return "\n".join(lines)


def _prompt_section(prompts: dict[str, str], trained_with: dict) -> str:
    mode = trained_with.get("instruction_mode") or "instruction"
    lines = ["## Prompts", ""]
    if not prompts:
        lines += [f"The model was trained with instruction mode `{mode}`: inputs are embedded as they are, "
                  "without prompts.", ""]
        return "\n".join(lines)
    lines += [f"Instruction mode `{mode}`. Queries get a prompt; documents never do. Names ending in `-query` "
              "are for the query side of retrieval-like tasks; the others apply to every input of that "
              "(symmetric) task or task type. Per-task prompts for "
              f"{sum(1 for n in prompts if n.split('-')[0] not in _TYPE_NAMES and n != 'query')} tasks "
              "are in `config_sentence_transformers.json`.", "", "| prompt name | prompt |", "|---|---|"]
    for name, text in prompts.items():
        if name.split("-")[0] in _TYPE_NAMES or name == "query":
            lines.append(f"| `{name}` | `{json.dumps(text)[1:-1]}` |")
    lines.append("")
    return "\n".join(lines)


_TYPE_NAMES = {"Classification", "MultilabelClassification", "Clustering", "Retrieval", "Reranking",
               "InstructionRetrieval", "InstructionReranking", "STS", "BitextMining", "PairClassification",
               "Summarization"}


def _details(describe: dict, exported: dict) -> str:
    lora = exported.get("lora")
    lines = ["## Model", "", "| | |", "|---|---|",
             f"| base model | `{describe.get('pretrained')}` |"]
    if exported.get("base_encoder"):
        lines.append(f"| earlier stage (merged into the base) | `{exported['base_encoder']}` |")
    lora_text = f"r={lora['r']}, alpha={lora['alpha']}" if lora else "none (full weights)"
    lines += [f"| LoRA (merged into the weights) | {lora_text} |",
              f"| pooling | {describe.get('pooling')} |",
              f"| L2 normalisation | {describe.get('normalize')} |",
              f"| max sequence length | {describe.get('max_length')} tokens |",
              f"| embedding dimension | {describe.get('embedding_dim')} |",
              f"| weights dtype | {exported.get('dtype')} |", ""]
    if describe.get("pooling") == "last_token":
        lines += ["Last-token pooling reads the hidden state of the EOS token: the tokenizer appends EOS to every "
                  "input (`add_eos_token`), as in training.", ""]
    return "\n".join(lines)


def _training(record: dict | None, record_path: str | None) -> str:
    lines = ["## Training", ""]
    if record is None:
        lines += [f"Training run record: {NOT_RECORDED} (no run_record.json beside the exported encoder).", ""]
        return "\n".join(lines)
    parent = record.get("parent_run") or {}
    lines += ["| | |", "|---|---|",
              f"| run | `{record.get('run_name', NOT_RECORDED)}` (id `{record.get('run_id', NOT_RECORDED)}`) |",
              f"| parent run (earlier stage) | {('`' + str(parent.get('run_id')) + '`') if parent else 'none'} |",
              f"| W&B run id | {record.get('wandb_run_id') or NOT_RECORDED} |",
              f"| steps | {record.get('global_step', NOT_RECORDED)} |",
              f"| wall time | {record.get('wall_time_s', NOT_RECORDED)} s |",
              f"| git | {(record.get('git') or {}).get('sha', NOT_RECORDED)}"
              f"{' (dirty)' if (record.get('git') or {}).get('dirty') else ''} |",
              f"| record | `{record_path}` |", ""]
    data = record.get("data")
    lines += ["### Data mixture", ""]
    if data:
        lines += ["```json", json.dumps(data, indent=2, default=str), "```", ""]
    else:
        lines += [NOT_RECORDED, ""]
    before, after = record.get("val_before") or {}, record.get("val_after") or {}
    if before or after:
        lines += ["### Validation", "", "| metric | before | after |", "|---|---:|---:|"]
        for key in sorted(set(before) | set(after)):
            fmt = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else NOT_RECORDED  # noqa: E731
            lines.append(f"| {key} | {fmt(before.get(key))} | {fmt(after.get(key))} |")
        lines.append("")
    config = record.get("config") or {}
    shown = {k: config[k] for k in CONFIG_SECTIONS if k in config}
    if shown:
        import yaml

        lines += ["### Training config (resolved; secrets removed)", "", "```yaml",
                  yaml.safe_dump(shown, sort_keys=False, default_flow_style=False).rstrip(), "```", ""]
    return "\n".join(lines)


def _scores(scores: dict[str, float], sources: list[str]) -> str:
    lines = ["## Scores", ""]
    if not scores:
        lines += [f"Evaluation scores: {NOT_RECORDED} (no evaluation run record names this run; pass "
                  "`model_card.scores=[...]` to embedforge-export).", ""]
        return "\n".join(lines)
    lines += ["Main score x 100 per task (from " + ", ".join(f"`{s}`" for s in sources) + ").", "",
              "| task | score |", "|---|---:|"]
    lines += [f"| {task} | {score:.2f} |" for task, score in scores.items()]
    lines.append(f"| average ({len(scores)} tasks) | {sum(scores.values()) / len(scores):.2f} |")
    lines.append("")
    return "\n".join(lines)


def render_model_card(*, name: str, describe: dict, exported: dict, prompts: dict[str, str], record: dict | None,
                      record_path: str | None, scores: dict[str, float], score_sources: list[str],
                      path_hint: str) -> str:
    parts = [_front_matter(describe, name, hub_base_model(describe.get("pretrained", ""))),
             f"# {name}", "",
             "A text-embedding model trained with embedforge (LoRA contrastive fine-tuning "
             "of a pretrained transformer, after Wang et al., 2024), exported with `embedforge-export` to the "
             "sentence-transformers format: LoRA merged into the weights, pooling and normalisation as in training.",
             "", _usage(path_hint, prompts), _prompt_section(prompts, describe.get("trained_with") or {}),
             _details(describe, exported), _training(record, record_path), _scores(scores, score_sources)]
    return "\n".join(parts)
