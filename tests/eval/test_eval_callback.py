"""The in-training MTEB callback evaluates every N steps and at the end, and logs val/<task>/<score>."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from embedforge.eval.callback import MTEBEvalCallback
from embedforge.paths import CONF_DIR


class _Module(pl.LightningModule):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def training_step(self, batch, batch_idx):
        features = self.encoder.tokenize(["a cat sat", "the dog ran far"])
        emb = self.encoder(features["input_ids"], features["attention_mask"])
        return 1.0 - (emb[0] * emb[1]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.encoder.parameters(), lr=0.05)

    def train_dataloader(self):
        return DataLoader(list(range(8)), batch_size=1)


def test_callback_runs_every_n_steps_and_at_end(tasks_root, tmp_path):
    from embedforge.model.builder import encoder_from_pretrained

    encoder = encoder_from_pretrained("tiny:mistral", dtype="float32")
    callback = MTEBEvalCallback(tasks=["MySTS", "MyRetrieval"], every_n_steps=2, data_dir=str(tasks_root))
    logger = pl.loggers.CSVLogger(tmp_path)
    trainer = pl.Trainer(max_steps=5, callbacks=[callback], logger=logger, accelerator="cpu", enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Module(encoder))
    assert [step for step, _ in callback.history] == [2, 4, 5]
    keys = set(callback.history[-1][1])
    assert keys == {"val/MySTS/cosine_spearman", "val/MyRetrieval/ndcg_at_10"}
    assert "val/MySTS/cosine_spearman" in trainer.logged_metrics
    logged = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "val/MyRetrieval/ndcg_at_10" in logged


def test_callback_config_instantiates(tasks_root):
    cfg = OmegaConf.load(CONF_DIR / "callbacks" / "mteb_eval.yaml")
    cfg.mteb_eval.data_dir = str(tasks_root)
    callback = instantiate(cfg.mteb_eval)
    assert isinstance(callback, MTEBEvalCallback) and callback.every_n_steps == 200
    assert callback.policy.by_type["STS"] == "Retrieve semantically similar text."


def test_callback_needs_tasks():
    with pytest.raises(ValueError, match="callbacks.mteb_eval.tasks"):
        MTEBEvalCallback(tasks=[])


def test_callback_inside_embedforge_train(compose_train, tasks_root):
    """The real wiring: conf/callbacks/with_mteb_eval.yaml + EmbeddingModule + CSV logger."""
    from pathlib import Path

    from embedforge.train.run import train

    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "callbacks=with_mteb_eval", "logger=csv",
                        f"callbacks.mteb_eval.data_dir={tasks_root}", "callbacks.mteb_eval.tasks=[MySTS]",
                        "callbacks.mteb_eval.every_n_steps=2", "data.batch_size=8", "data.max_train_examples=32",
                        "validate_before_fit=false", "save_encoder=false")
    record = train(cfg)
    assert record["global_step"] == 4
    metrics = (Path(cfg.paths.output_dir) / "csv" / "version_0" / "metrics.csv").read_text()
    header, *rows = metrics.splitlines()
    column = header.split(",").index("val/MySTS/cosine_spearman")
    values = [float(row.split(",")[column]) for row in rows if row.split(",")[column]]
    assert len(values) >= 2, "expected scores during training (every 2 of 4 steps), not only at the end"
    assert all(-100 <= v <= 100 for v in values)
    # the run record keeps the scores per step, and the last ones are what a sweep maximises
    from embedforge.run_record import record_metric

    assert [h["step"] for h in record["mteb_eval"]["history"]] == [2, 4]
    assert record_metric(record, "val/MySTS/cosine_spearman") == record["mteb_eval"]["history"][-1]["val/MySTS/cosine_spearman"]
    assert record_metric(record, "val/MySTS/cosine_spearman") == pytest.approx(values[-1], abs=1e-4)


def test_callback_under_two_processes_does_not_hang(compose_train, tasks_root):
    """ddp_sim: rank 0 evaluates while rank 1 waits at the callback's CPU barrier (not at the next
    gradient all-reduce); both continue and the scores reach the log."""
    from pathlib import Path

    from embedforge.train.run import train

    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "callbacks=with_mteb_eval", "trainer=ddp_sim",
                        f"callbacks.mteb_eval.data_dir={tasks_root}", "callbacks.mteb_eval.tasks=[MySTS]",
                        "callbacks.mteb_eval.every_n_steps=1", "data.batch_size=4", "data.max_train_examples=16",
                        "data.val_files=null", "validate_before_fit=false", "save_encoder=false", "run_name=ddpeval")
    cfg.logger = compose_train("logger=csv").logger
    record = train(cfg)
    assert record["global_step"] == 2
    header, *rows = (Path(cfg.paths.output_dir) / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("val/MySTS/cosine_spearman")
    assert sum(1 for row in rows if row.split(",")[column]) >= 2  # after step 1 and step 2 (end)


def test_a_learning_curve_in_the_run_record(compose_train, tasks_root, tmp_path):
    """Validation every 2 steps and the callback on a sampled task every 2 steps: the record keeps both
    curves (val_history from step 0, mteb_eval.history), and embedforge-report draws them."""
    from embedforge.report.curve import plot_curve, read_curve
    from embedforge.train.run import train

    cfg = compose_train("model=tiny-mistral", "pooling=last_token", "callbacks=with_mteb_eval",
                        f"callbacks.mteb_eval.data_dir={tasks_root}", "callbacks.mteb_eval.tasks=[MySTS]",
                        "callbacks.mteb_eval.every_n_steps=2", "callbacks.mteb_eval.subsample={MySTS:6}",
                        "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
                        "data.batch_size=8", "data.max_train_examples=32", "save_encoder=false", "run_name=curve")
    record = train(cfg)
    history = record["val_history"]
    assert [h["step"] for h in history] == [0, 2, 4]
    assert {k: history[0][k] for k in ("acc@1", "ndcg@10")} == pytest.approx(
        {k: record["val_before"][f"val/{k}"] for k in ("acc@1", "ndcg@10")})
    assert {k: history[-1][k] for k in ("acc@1", "ndcg@10")} == pytest.approx(
        {k: record["val_after"][f"val/{k}"] for k in ("acc@1", "ndcg@10")})
    assert [h["step"] for h in record["mteb_eval"]["history"]] == [2, 4]
    assert record["config"]["callbacks"]["mteb_eval"]["subsample"] == {"MySTS": 6}
    curve = read_curve(cfg.paths.output_dir, [])
    assert curve.steps == [0, 2, 4] and curve.label("MySTS") == "MySTS (6-item sample)"
    assert curve.measures["held-out validation ndcg@10"][4] == pytest.approx(100 * record["val_after"]["val/ndcg@10"])
    assert plot_curve(curve, tmp_path / "curve.png").stat().st_size > 0
