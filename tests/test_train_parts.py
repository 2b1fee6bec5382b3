"""Training parts against independent references: validation metrics vs pytrec_eval, the LR schedule's
shape, AdamW's decay groups, strict checkpoint keys, and sweep.yaml against the training config."""

import math

import pytest
import pytrec_eval
import torch
import yaml

from embedforge.paths import REPO_ROOT
from embedforge.train.metrics import retrieval_metrics
from embedforge.train.optim import adamw, linear_warmup_decay


def test_retrieval_metrics_equal_pytrec_eval():
    torch.manual_seed(0)
    queries, corpus = torch.randn(40, 16), torch.randn(25, 16)
    relevant = torch.randint(0, 25, (40,))
    ours = retrieval_metrics(queries, corpus, relevant, k=10)

    scores = (torch.nn.functional.normalize(queries) @ torch.nn.functional.normalize(corpus).T).tolist()
    run = {f"q{i}": {f"d{j}": s for j, s in enumerate(row)} for i, row in enumerate(scores)}
    qrels = {f"q{i}": {f"d{int(r)}": 1} for i, r in enumerate(relevant)}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank", "P.1"}).evaluate(run)
    # MRR@10: pytrec's reciprocal rank, zero when the positive ranks below 10
    ranks = {q: 1 / v["recip_rank"] for q, v in per_query.items()}
    mrr10 = sum(1 / r if r <= 10 + 1e-9 else 0.0 for r in ranks.values()) / len(ranks)
    assert ours["ndcg@10"] == pytest.approx(sum(v["ndcg_cut_10"] for v in per_query.values()) / 40, abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(mrr10, abs=1e-6)
    assert ours["acc@1"] == pytest.approx(sum(v["P_1"] for v in per_query.values()) / 40, abs=1e-6)
    assert 0 < ours["ndcg@10"] < 1  # random data: neither trivial end


def test_lr_schedule_shape():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = linear_warmup_decay(optimizer, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step(), schedule.step()
    assert lrs[0] == pytest.approx(0.25)               # warmup start: 1 / warmup
    assert lrs[3] == pytest.approx(1.0)                # warmup end: the peak
    assert lrs[4] == pytest.approx(1.0)                # decay starts at the peak
    assert lrs[19] == pytest.approx(1 / 16)            # last step: (20 - 19) / (20 - 4)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:4]))
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))  # strictly linear decay
    assert lrs[12] - lrs[13] == pytest.approx(1 / 16)


def test_adamw_decays_matrices_only(compose_train):
    from embedforge.train.module import EmbeddingModule

    module = EmbeddingModule(compose_train("model=tiny-mistral", "lora=none"))
    module.configure_model()
    optimizer = adamw(module.parameters(), lr=1e-4, weight_decay=0.1)
    by_decay = {g["weight_decay"]: g["params"] for g in optimizer.param_groups}
    names = {id(p): n for n, p in module.named_parameters()}
    no_decay = {names[id(p)] for p in by_decay[0.0]}
    assert no_decay and all("norm" in n or n.endswith("bias") for n in no_decay)
    assert any("norm" in n for n in no_decay)
    assert all(p.ndim >= 2 for p in by_decay[0.1])
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in module.parameters() if p.requires_grad)


def test_optim_config_targets_build_the_schedule(compose_train):
    from hydra.utils import instantiate

    cfg = compose_train("optim.lr=0.5", "optim.warmup_steps=2")
    optimizer = instantiate(cfg.optim.optimizer)([torch.nn.Parameter(torch.zeros(3, 3))])
    scheduler = instantiate(cfg.optim.scheduler)(optimizer, total_steps=10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25) and scheduler.get_last_lr()[0] == pytest.approx(0.25)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1


def test_full_fine_tuning_keeps_fp32_master_weights():
    from embedforge.model.builder import EncoderSettings, _weights_dtype

    assert _weights_dtype(EncoderSettings("x", dtype="auto", for_training=True)) == torch.float32
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():  # LoRA's frozen base may be bf16
        from embedforge.model.lora import LoraSettings

        assert _weights_dtype(EncoderSettings("x", lora=LoraSettings(), for_training=True)) == torch.bfloat16


def test_resume_with_a_renamed_key_fails_loudly(compose_train, tmp_path):
    from embedforge.train.run import train

    common = ["model=tiny-mistral", "pooling=last_token", "lora=r8", "data.batch_size=8", "data.max_train_examples=8",
              "data.val_files=null", "validate_before_fit=false", "save_encoder=false", "run_name=renamed"]
    train(compose_train(*common, "trainer.max_epochs=1"))
    path = tmp_path / "runs" / "renamed" / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    key = next(k for k in checkpoint["state_dict"] if "lora_A" in k)
    checkpoint["state_dict"][key.replace("lora_A", "lora_Z")] = checkpoint["state_dict"].pop(key)
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError, match="1 missing .*1 unexpected"):
        train(compose_train(*common, "trainer.max_epochs=2", f"ckpt_path={path}"))


def test_checkpoints_load_with_weights_only(compose_train, tmp_path):
    from embedforge.train.run import train

    train(compose_train("model=tiny-mistral", "lora=r8", "data.batch_size=8", "data.max_train_examples=8",
                        "data.val_files=null", "validate_before_fit=false", "save_encoder=false", "run_name=wo"))
    checkpoint = torch.load(tmp_path / "runs/wo/run/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["rng_states"] and checkpoint["hyper_parameters"]["trained_with"]["run_id"] == "wo/run"


# ---------------------------------------------------------------------------------------------- sweep
SWEEP = yaml.safe_load((REPO_ROOT / "sweep.yaml").read_text())


def _sweep_values(spec):
    if "values" in spec:
        return spec["values"]
    return [spec["min"], spec["max"]]


@pytest.mark.parametrize("name", sorted(SWEEP["parameters"]))
def test_every_sweep_parameter_is_a_training_override(compose_train, name):
    from embedforge.train.settings import TrainSettings

    fixed = [a for a in SWEEP["command"] if "=" in a and not a.startswith("$")]
    for value in _sweep_values(SWEEP["parameters"][name]):
        cfg = compose_train(*fixed, f"{name}={value}")
        TrainSettings.from_config(cfg)
        node = cfg
        for part in name.split("."):
            node = node[part]
        if isinstance(node, (int, float, str)):  # a leaf key: the override landed
            assert node == value or (isinstance(value, float) and math.isclose(node, value))


def test_sweep_metric_is_logged_by_training():
    metric = SWEEP["metric"]["name"]
    assert metric.startswith("val/")
    logged = {f"val/{k}" for k in retrieval_metrics(torch.eye(3), torch.eye(3), torch.arange(3))}
    assert metric in logged
