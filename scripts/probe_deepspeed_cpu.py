"""Probe (not part of the project's runs): does Lightning's DeepSpeedStrategy (ZeRO-3) train the embedforge
module on 2 CPU processes over gloo? It overrides the three places where Lightning assumes CUDA devices, to
see how far ZeRO-3 itself gets (docs/scale.md). Needs deepspeed importable, e.g.
  pip install --target /tmp/ds-site deepspeed  (plus hjson py-cpuinfo ninja msgpack einops)
  DS_ACCELERATOR=cpu PYTHONPATH=src:/tmp/ds-site python scripts/probe_deepspeed_cpu.py
"""
import os
import tempfile

from pytorch_lightning.strategies import DeepSpeedStrategy
from pytorch_lightning.strategies.ddp import DDPStrategy


class CPUDeepSpeed(DeepSpeedStrategy):
    def setup_environment(self):  # Lightning: "only supported on CUDA GPUs"
        DDPStrategy.setup_environment(self)

    @property
    def root_device(self):
        import torch
        return torch.device("cpu", self.local_rank)  # Lightning passes the index as DeepSpeed's device_rank

    def setup_distributed(self):  # without Lightning's check that device indices are GPU ranks
        from lightning_fabric.utilities.seed import reset_seed
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()


def main():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from embedforge.paths import CONF_DIR
    from embedforge.train.module import EmbeddingModule
    from embedforge.train.datamodule import EmbeddingDataModule


    out = tempfile.mkdtemp(prefix="ds-probe-")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.output_root={out}/runs", f"paths.output_dir={out}/run",
            "logger=none", "model=tiny-mistral", "pooling=last_token", "trainer=cpu", "lora=r8", "data.batch_size=4",
            "data.val_files=null", "trainer.max_steps=2", "data.max_train_examples=16"])
    module = EmbeddingModule(cfg)
    module.configure_model()
    dm = EmbeddingDataModule(cfg.data, module.encoder.tokenizer, seed=0)
    # logging_batch_size_per_gpu: without it Lightning reads the loader's batch_sampler.batch_size, which
    # our loader (batch_size=None, the sampler yields whole batches) does not have: AttributeError
    strategy = CPUDeepSpeed(stage=3, process_group_backend="gloo", logging_batch_size_per_gpu=4)
    strategy._start_method = "spawn"
    trainer = instantiate(cfg.trainer, logger=False, devices=2, strategy=strategy, gradient_clip_val=None,
                          default_root_dir=f"{out}/run")
    trainer.fit(module, datamodule=dm)
    print("fit finished; ZeRO-3 checkpoint folders:", os.listdir(f"{out}/run/checkpoints"), flush=True)

if __name__ == "__main__":
    main()
