"""Training: LightningModule, DataModule, callbacks, checkpoints."""
