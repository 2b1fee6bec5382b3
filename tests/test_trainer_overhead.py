"""What keeps the trainer's step close to a bare loop (benchmarks/trainer_overhead.py): DataLoader
options (workers and pinned memory on a GPU, none on CPU), batches from workers equal to in-process
ones, and training-step logging that never makes the host wait for the device."""

import pytest
import torch

from embedforge.errors import ConfigError
from embedforge.train.datamodule import AUTO_GPU_WORKERS, EmbeddingDataModule
from embedforge.train.module import EmbeddingModule


class _Trainer:
    def __init__(self, device: str):
        self.strategy = type("Strategy", (), {"root_device": torch.device(device)})()


def _datamodule(compose_train, *overrides, device=None):
    from embedforge.model.builder import load_tokenizer
    from embedforge.model.settings import EncoderGroups

    cfg = compose_train("experiment=demo", *overrides)
    tokenizer = load_tokenizer(EncoderGroups.from_config(cfg).settings())
    datamodule = EmbeddingDataModule(cfg.data, tokenizer, seed=int(cfg.seed))
    if device:
        datamodule.trainer = _Trainer(device)
    return datamodule


def test_auto_loader_options_follow_the_device(compose_train):
    on_cpu = _datamodule(compose_train, device="cpu").loader_options()
    assert on_cpu == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    assert _datamodule(compose_train).loader_options()["num_workers"] == 0  # no trainer yet: CPU
    on_gpu = _datamodule(compose_train, device="cuda").loader_options()
    assert on_gpu == {"num_workers": AUTO_GPU_WORKERS, "pin_memory": True, "persistent_workers": True}
    explicit = _datamodule(compose_train, "data.num_workers=1", "data.pin_memory=false", device="cuda").loader_options()
    assert explicit == {"num_workers": 1, "pin_memory": False, "persistent_workers": True}


@pytest.mark.parametrize("override, key", [("data.num_workers=-1", "data.num_workers"),
                                           ("data.num_workers=many", "data.num_workers"),
                                           ("data.pin_memory=sometimes", "data.pin_memory")])
def test_bad_loader_options_name_their_key(compose_train, override, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        _datamodule(compose_train, override).loader_options()


def test_worker_batches_equal_in_process_batches(compose_train):
    """Tokenising in a worker process changes where collation runs, not what it gives."""
    def batches(workers: int):
        datamodule = _datamodule(compose_train, f"data.num_workers={workers}")
        datamodule.setup("fit")
        return list(datamodule.train_dataloader())

    in_process, from_worker = batches(0), batches(1)
    assert len(in_process) == len(from_worker) > 1
    for a, b in zip(in_process, from_worker):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _LoggingTrainer:
    def __init__(self, logs: bool):
        self.optimizers = [torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)]
        self._logger_connector = type("Connector", (), {"should_update_logs": logs})()


@pytest.mark.parametrize("logs", [False, True])
def test_training_step_logs_nothing_that_syncs(compose_train, monkeypatch, logs):
    """Every logged value is a tensor (a Python number would be copied to the device, a sync); the
    progress bar (which turns its values into numbers every step) gets CPU copies, on logged steps only."""
    module = EmbeddingModule(compose_train("experiment=demo"))
    loss, acc = torch.tensor(2.5, requires_grad=True), torch.tensor(0.5)
    monkeypatch.setattr(module, "contrastive_step", lambda batch: (loss, acc))
    monkeypatch.setattr(EmbeddingModule, "trainer", property(lambda self: _LoggingTrainer(logs)))
    monkeypatch.setattr(EmbeddingModule, "global_step", property(lambda self: 7))
    calls = []
    monkeypatch.setattr(module, "log", lambda name, value, **kw: calls.append((name, value, kw)))
    batch = {"query_input_ids": torch.zeros(4, 3, dtype=torch.long)}

    assert module.training_step(batch, 0) is loss
    module.on_train_batch_end(loss, batch, 0)
    assert all(isinstance(value, torch.Tensor) for _, value, _ in calls)
    values = {name: float(value.detach()) for name, value, _ in calls}
    assert values["train/lr"] == 0.25 and values["train/global_step"] == 7.0 and values["train/loss"] == 2.5
    progress_bar = {name: value for name, value, kw in calls if kw.get("prog_bar")}
    assert set(progress_bar) == ({"loss", "acc"} if logs else set())
    assert all(value.device.type == "cpu" and not value.requires_grad for value in progress_bar.values())


def test_into_slots_equals_the_scatter_it_replaces():
    """Slots from a gather (no host sync) hold what an index_put at the filled positions gives, and
    send the same gradients back to the filled rows."""
    from embedforge.train.module import into_slots

    torch.manual_seed(0)
    doc_mask = torch.tensor([True, True, True, False, True, False])  # 3 positives, then negatives, two empty
    filled = torch.randn(4, 5, requires_grad=True)
    weights = torch.randn(6, 5)
    reference = filled.new_zeros(6, 5).index_put((doc_mask.nonzero(as_tuple=True)[0],), filled)
    (expected_grad,) = torch.autograd.grad((reference * weights).sum(), filled)
    slots = into_slots(filled, doc_mask)
    (grad,) = torch.autograd.grad((slots * weights).sum(), filled)
    assert torch.equal(slots, reference) and torch.equal(grad, expected_grad)
    assert torch.equal(slots[~doc_mask], torch.zeros(2, 5))


@pytest.mark.slow
def test_trainer_overhead_benchmark_runs(monkeypatch):
    """The benchmark's tiny run: both sides time their steps on the same batches (it checks the first)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "trainer_overhead.py"
    spec = importlib.util.spec_from_file_location("trainer_overhead", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "trainer_overhead", module)  # where Hydra finds its step-timer callback
    spec.loader.exec_module(module)
    (row,) = module.main(["--batch-size", "2", "--max-length", "16", "--steps", "3", "--warmup", "1",
                          "--repeats", "1"])
    assert row["line"] == "lora r16"
    assert row["wall_trainer_ms"] > 0 and row["wall_bare_ms"] > 0 and row["cpu_ratio_median"] > 0
