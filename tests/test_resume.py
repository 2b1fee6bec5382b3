"""`ckpt_path=last` resumes at the same step with the same optimiser state, and ends where an
uninterrupted run ends; checkpoints hold only the trainable (LoRA) weights."""

import json

import torch

from embedforge.model.builder import load_encoder
from embedforge.train.run import train

COMMON = ["model=tiny-mistral", "pooling=last_token", "lora=r8", "data.batch_size=8", "data.max_train_examples=16",
          "data.val_files=null", "validate_before_fit=false", "save_encoder=false", "optim.warmup_steps=1"]


def run(compose_train, tmp_path, name, epochs, *extra, folder="run"):
    steps_file = tmp_path / f"{name}-{epochs}-steps.json"
    cfg = compose_train(*COMMON, f"run_name={name}", f"trainer.max_epochs={epochs}",
                        "+callbacks.steps._target_=callbacks_for_tests.RecordSteps", f"+callbacks.steps.path={steps_file}",
                        f"paths.output_dir=${{paths.output_root}}/${{run_name}}/{folder}", *extra)
    train(cfg)
    return json.loads(steps_file.read_text()), torch.load(tmp_path / "runs" / name / folder / "checkpoints" / "last.ckpt",
                                                          weights_only=False)


def test_resume_from_last_continues_exactly(compose_train, tmp_path):
    steps_full, full = run(compose_train, tmp_path, "full", 2)
    # Same schedule (2 epochs), interrupted after the first epoch's checkpoint.
    steps_half, half = run(compose_train, tmp_path, "split", 2, "+callbacks.stop._target_=callbacks_for_tests.StopAfterSteps",
                           "+callbacks.stop.steps=2")
    steps_rest, resumed = run(compose_train, tmp_path, "split", 2, "ckpt_path=last", folder="resumed")

    assert steps_full == {"first_step": 0, "batches": 4}
    assert steps_half == {"first_step": 0, "batches": 2}
    assert steps_rest == {"first_step": 2, "batches": 2}, "resume must continue at step 2, not restart"
    assert half["global_step"] == 2 and resumed["global_step"] == full["global_step"] == 4

    # Only trainable LoRA weights are stored.
    assert full["state_dict"] and all("lora_" in k for k in full["state_dict"])
    # Same weights and the same AdamW moments as the uninterrupted run (dropout RNG restored too).
    for key, value in full["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key], value, atol=1e-6), key
    opt_full, opt_res = full["optimizer_states"][0]["state"], resumed["optimizer_states"][0]["state"]
    assert opt_full.keys() == opt_res.keys()
    for index in opt_full:
        assert opt_full[index]["step"] == opt_res[index]["step"]
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(opt_full[index][moment], opt_res[index][moment], atol=1e-7)
    assert full["lr_schedulers"][0]["last_epoch"] == resumed["lr_schedulers"][0]["last_epoch"] == 4


def test_checkpoint_rebuilds_the_trained_encoder(compose_train, tmp_path):
    run(compose_train, tmp_path, "ckpt", 1)
    path = tmp_path / "runs" / "ckpt" / "run" / "checkpoints" / "last.ckpt"
    encoder = load_encoder(path)
    stored = torch.load(path, weights_only=False)["state_dict"]
    for name, param in encoder.named_parameters():
        if param.requires_grad:
            assert torch.equal(param.detach(), stored["encoder." + name])
    assert any(v.abs().sum() > 0 for k, v in stored.items() if "lora_B" in k), "training should move LoRA B off zero"
