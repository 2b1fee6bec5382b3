"""embedforge-evaluate: MTEB tasks / local folders / a benchmark, or the passkey probe (eval=passkey)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import embedforge.paths

log = logging.getLogger("embedforge.evaluate")


def load_encoder(cfg: DictConfig):
    """The encoder to evaluate: `checkpoint` (encoder folder or Lightning .ckpt) or model/lora/pooling."""
    from embedforge.model.builder import build_encoder
    from embedforge.model.encoder import ENCODER_FILE, Encoder

    ckpt = cfg.get("checkpoint")
    if not ckpt:
        return build_encoder(cfg.model, cfg.get("lora"), cfg.get("pooling"))
    path = Path(hydra.utils.to_absolute_path(str(ckpt)))
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: {path} does not exist")
    if path.suffix == ".ckpt":
        from embedforge.train.checkpoint import load_encoder_from_checkpoint  # lazy: pulls in Lightning

        return load_encoder_from_checkpoint(path)
    if (path / ENCODER_FILE).is_file():  # an encoder folder carries its own pooling and LoRA settings
        return Encoder.load(path, dtype=cfg.model.get("torch_dtype", "auto"))
    if path.is_dir():  # a plain Hugging Face model folder: pooling and LoRA come from the config
        return build_encoder({**OmegaConf.to_container(cfg.model, resolve=True), "pretrained": str(path)},
                             cfg.get("lora"), cfg.get("pooling"))
    raise ValueError(f"checkpoint: {path} is neither an encoder folder nor a .ckpt file")


def instruction_policy(cfg: DictConfig):
    from embedforge.eval.instructions import InstructionPolicy

    instructions = OmegaConf.to_container(cfg.instructions, resolve=True)
    override = cfg.eval.get("normalize_by_type")
    override = OmegaConf.to_container(override, resolve=True) if override is not None else {}
    instructions["normalize_by_type"] = {**(instructions.get("normalize_by_type") or {}), **override}
    return InstructionPolicy.from_config(instructions)


def run(cfg: DictConfig) -> Path:
    """Run the configured evaluation; return the path of its machine-readable summary."""
    mode = cfg.eval.get("mode", "mteb")
    if mode not in ("mteb", "passkey"):
        raise ValueError(f"eval.mode: unknown mode {mode!r} (expected mteb or passkey)")
    policy = instruction_policy(cfg)  # config errors before the (slow) model load
    if cfg.get("torch_threads"):
        import torch

        torch.set_num_threads(int(cfg.torch_threads))
    encoder = load_encoder(cfg)
    if cfg.get("seed") is not None:
        import torch

        torch.manual_seed(int(cfg.seed))
    if mode == "passkey":
        from embedforge.eval.passkey import run_passkey

        return run_passkey(encoder, cfg.eval, out_dir=Path(hydra.utils.to_absolute_path(cfg.output_dir)),
                           template=cfg.instructions.template, mode=cfg.instructions.mode)
    from embedforge.eval.results import write_summary
    from embedforge.eval.runner import resolve_tasks, run_tasks

    data_dir = cfg.eval.get("data_dir")
    tasks = resolve_tasks(list(cfg.eval.tasks) if cfg.eval.get("tasks") else None, benchmark=cfg.eval.get("benchmark"),
                          data_dir=hydra.utils.to_absolute_path(data_dir) if data_dir else None)
    out = run_tasks(encoder, tasks, policy=policy, out_dir=hydra.utils.to_absolute_path(cfg.output_dir),
                    batch_size=int(cfg.eval.batch_size), max_length=int(cfg.eval.max_length))
    summary = write_summary(out.out_dir, out.results, out.tasks, extra={"seconds": round(out.seconds, 1)})
    print((out.out_dir / "summary.md").read_text(encoding="utf-8"))
    log.info("evaluated %d tasks in %.0f s", len(tasks), out.seconds)
    return summary


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    print(summary)  # last line: the summary path, for scripts


if __name__ == "__main__":
    main()
