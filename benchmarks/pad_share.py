"""Share of pad tokens in training batches, without and with length grouping (data.group_by_length).

    python benchmarks/pad_share.py                       # the demo data, all-MiniLM-L6-v2's tokenizer
    python benchmarks/pad_share.py data=pretrain_weak data.sources.weak.path=$EMBEDFORGE_EVAL_DATA/SciFact

Pad share = pad positions / all positions of the query and document tensors over one epoch, which is
the compute a batch spends on nothing (attention and MLP run on pad positions too).
"""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir


def pad_share(datamodule) -> float:
    pads = total = 0
    for batch in datamodule.train_dataloader():
        for key in ("query_attention_mask", "doc_attention_mask"):
            mask = batch[key]
            pads += int((mask == 0).sum())
            total += mask.numel()
    return pads / total


def main(overrides: list[str]) -> None:
    from embedforge.model.builder import load_tokenizer
    from embedforge.model.settings import EncoderGroups
    from embedforge.paths import CONF_DIR
    from embedforge.train.datamodule import EmbeddingDataModule

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = ["experiment=demo", "model.max_length=256", *overrides]
        plain, grouped = (compose("train", overrides=base + [f"data.group_by_length={g}"]) for g in (False, True))
    tokenizer = load_tokenizer(EncoderGroups.from_config(plain).settings())
    shares = {}
    for name, cfg in (("mixed", plain), ("grouped", grouped)):
        datamodule = EmbeddingDataModule(cfg.data, tokenizer, seed=int(cfg.seed))
        datamodule.setup("fit")
        shares[name] = pad_share(datamodule)
    print(f"pad share, batch {plain.data.batch_size}: mixed {shares['mixed']:.1%}, length-grouped "
          f"{shares['grouped']:.1%} (ratio {shares['grouped'] / shares['mixed']:.2f})")


if __name__ == "__main__":
    main(sys.argv[1:])
