"""The one way to build an Encoder: from settings (the `model`, `lora`, `pooling` groups), from an
encoder folder, or from a training checkpoint. Training, checkpoint loading, evaluation, mining and
export all come through here.

Stages: `model.init_from` names an earlier stage's encoder (folder or .ckpt). With
`model.init_mode=merge` (the default) its LoRA is folded into the base weights and this stage trains
a fresh adapter with its own LoRA settings; with `continue` it keeps training the same adapter. A
full-fine-tuned stage hands over its weights either way. Pooling, normalisation and max length are
always this stage's own.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from embedforge.model.encoder import ADAPTER_DIR, ENCODER_FILE, Encoder, enable_activation_checkpointing
from embedforge.model.loading import ModelLoadError, load_backbone, resolve_dtype
from embedforge.model.lora import LoraSettings, apply_lora, use_shared_dropout_forward
from embedforge.model.settings import INIT_MODES, EncoderGroups, EncoderSettings

log = logging.getLogger(__name__)

def build_encoder(settings: EncoderSettings) -> Encoder:
    """Build an Encoder: base weights (a named model, or an earlier stage), then LoRA, pooling."""
    if settings.init_mode not in INIT_MODES:
        raise ValueError(f"model.init_mode: unknown mode {settings.init_mode!r} (expected one of {', '.join(INIT_MODES)})")
    dtype = _weights_dtype(settings)
    base_encoder: str | None = None
    lora = settings.lora
    if settings.init_from:
        parent = load_encoder(settings.init_from, dtype=dtype, trainable=settings.init_mode == "continue")
        pretrained, tokenizer = parent.pretrained, parent.tokenizer
        if parent.lora is not None and settings.init_mode == "continue":
            if lora is not None and (lora.r, lora.alpha, lora.target_modules, lora.extra) != (
                    parent.lora.r, parent.lora.alpha, parent.lora.target_modules, parent.lora.extra):
                raise ValueError(f"model.init_mode=continue keeps {settings.init_from}'s adapter (r={parent.lora.r}, "
                                 f"alpha={parent.lora.alpha}); the lora group asks for r={lora.r}, alpha={lora.alpha}: "
                                 "use init_mode=merge for a fresh adapter, or the parent's lora settings")
            backbone, lora, base_encoder = parent.backbone, parent.lora, parent.base_encoder
        else:
            backbone = parent.backbone.merge_and_unload() if parent.lora is not None else parent.backbone
            # The merged (or full-fine-tuned) parent is this encoder's base: a reload rebuilds it from there.
            base_encoder = str(Path(settings.init_from).resolve())
    else:
        backbone, tokenizer = load_backbone(settings.pretrained, dtype=dtype,
                                            attn_implementation=settings.attn_implementation)
        pretrained = settings.pretrained
    if settings.gradient_checkpointing:
        enable_activation_checkpointing(backbone)
    if lora is not None and not _is_peft(backbone):
        backbone = apply_lora(backbone, lora)
    elif lora is None and settings.for_training:
        for param in backbone.parameters():  # full fine-tuning (also of a merged earlier stage)
            param.requires_grad_(True)
    return Encoder(backbone, tokenizer, pooling=settings.pooling, normalize=settings.normalize,
                   max_length=settings.max_length, pretrained=pretrained, lora=lora, base_encoder=base_encoder,
                   trained_with=dict(settings.trained_with))


def encoder_from_pretrained(pretrained: str, *, pooling: str = "last_token", normalize: bool = True,
                            max_length: int = 512, lora: LoraSettings | None = None, dtype="auto",
                            attn_implementation: str | None = "sdpa", gradient_checkpointing: bool = False) -> Encoder:
    """A base model by name (hub id, folder, `embedded:`/`tiny:` name), or an encoder folder."""
    if (Path(pretrained) / ENCODER_FILE).is_file():
        return load_encoder(pretrained, dtype=dtype)
    return build_encoder(EncoderSettings(
        pretrained=pretrained, pooling=pooling, normalize=normalize, max_length=max_length, lora=lora,
        dtype=dtype, attn_implementation=attn_implementation, gradient_checkpointing=gradient_checkpointing))


def load_tokenizer(settings: EncoderSettings):
    """The tokenizer alone (cheap), so data can be checked and batched before the model is built."""
    from transformers import AutoTokenizer

    from embedforge.model.loading import resolve_pretrained
    from embedforge.model.tokenize import ensure_pad_token

    source = settings.init_from
    if source and Path(source).suffix == ".ckpt":
        source = resolve_pretrained(str(_checkpoint_hparams(Path(source))["cfg"]["model"]["pretrained"]))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source if source else resolve_pretrained(settings.pretrained))
    except OSError as exc:
        raise ModelLoadError(f"could not load the tokenizer of '{source or settings.pretrained}': {exc}") from exc
    ensure_pad_token(tokenizer)
    return tokenizer


# ---------------------------------------------------------------------------------------------- loading
def load_encoder(path: str | Path, *, dtype="auto", trainable: bool = False) -> Encoder:
    """An encoder folder (Encoder.save) or a Lightning .ckpt of ours, rebuilt through build_encoder."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return _load_checkpoint(path, dtype=dtype, trainable=trainable)
    meta_file = path / ENCODER_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: not an encoder folder (no {ENCODER_FILE}) and not a .ckpt file")
    meta = json.loads(meta_file.read_text())
    lora = LoraSettings(**meta["lora"]) if meta.get("lora") else None
    settings = EncoderSettings(
        pretrained=str(path) if lora is None else meta["pretrained"],  # full weights live in the folder
        pooling=meta["pooling"], normalize=meta["normalize"], max_length=meta["max_length"], dtype=dtype,
        init_from=None if lora is None else meta.get("base_encoder"), init_mode="merge",
        trained_with=meta.get("trained_with") or {})
    encoder = build_encoder(settings)
    if lora is not None:
        from peft import PeftModel

        encoder.backbone = PeftModel.from_pretrained(encoder.backbone, path / ADAPTER_DIR, is_trainable=trainable)
        if lora.share_dropout:  # the same forward as a fresh build or a .ckpt (apply_lora)
            use_shared_dropout_forward(encoder.backbone)
        encoder.lora = lora
        if (path / "tokenizer_config.json").is_file():  # the folder's own tokenizer, as saved with the encoder
            from transformers import AutoTokenizer

            from embedforge.model.tokenize import ensure_pad_token

            encoder.tokenizer = AutoTokenizer.from_pretrained(path)
            ensure_pad_token(encoder.tokenizer)
    elif trainable:
        encoder.requires_grad_(True)
    encoder.pretrained = meta["pretrained"]
    encoder.base_encoder = meta.get("base_encoder") if lora is not None else None
    return encoder


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "cfg" not in (checkpoint.get("hyper_parameters") or {}):
        raise ValueError(f"{path}: not an embedforge checkpoint (no hyper_parameters.cfg)")
    return checkpoint


def _checkpoint_hparams(path: Path) -> dict:
    return _read_checkpoint(path)["hyper_parameters"]


CHECKPOINT_PREFIX = "encoder."


def check_trainable_keys(expected: set[str], found: set[str], source: str) -> None:
    """A checkpoint must hold exactly the trainable tensors: a renamed adapter must not load as nothing."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise RuntimeError(f"{source}: the checkpoint's weights do not match the model's trainable parameters: "
                           f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                           f"(e.g. {unexpected[:3]})")


def _load_checkpoint(path: Path, *, dtype="auto", trainable: bool = False) -> Encoder:
    checkpoint = _read_checkpoint(path)  # read once: settings and weights
    hparams = checkpoint["hyper_parameters"]
    groups = EncoderGroups.from_config(hparams["cfg"])
    full_fine_tuning = not groups.lora.enabled
    # for_training=True for a full fine-tune: every weight is in the checkpoint and must be expected.
    settings = groups.settings(for_training=trainable or full_fine_tuning, gradient_checkpointing=False,
                               trained_with=hparams.get("trained_with"))
    settings.dtype = dtype if dtype != "auto" else settings.dtype
    encoder = build_encoder(settings)
    weights = {k[len(CHECKPOINT_PREFIX):]: v for k, v in checkpoint["state_dict"].items()
               if k.startswith(CHECKPOINT_PREFIX)}
    expected = {n for n, p in encoder.named_parameters() if p.requires_grad}
    check_trainable_keys(expected, set(weights), str(path))
    encoder.load_state_dict(weights, strict=False)
    if not trainable:
        encoder.requires_grad_(False)
        encoder.eval()
    return encoder


# ---------------------------------------------------------------------------------------------- helpers
def _weights_dtype(settings: EncoderSettings):
    dtype = resolve_dtype(settings.dtype)
    if settings.for_training and settings.lora is None and settings.dtype == "auto" and dtype != torch.float32:
        log.info("full fine-tuning: fp32 master weights (bf16 autocast computes the forward pass)")
        return torch.float32
    return dtype


def _is_peft(module) -> bool:
    return hasattr(module, "peft_config")


def encoder_from_groups(groups: EncoderGroups, checkpoint: str | None = None, *, dtype=None) -> Encoder:
    """The encoder a job names: `checkpoint` (encoder folder, .ckpt or plain HF folder) or the checked
    model/lora/pooling groups. Used by evaluation, mining, export and decontam."""
    dtype = dtype or groups.model.torch_dtype
    if not checkpoint:
        return build_encoder(groups.settings())
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: {path} does not exist")
    if path.suffix == ".ckpt" or (path / ENCODER_FILE).is_file():
        return load_encoder(path, dtype=dtype)
    if path.is_dir():  # a plain Hugging Face model folder: pooling and LoRA come from the groups
        return build_encoder(EncoderGroups(groups.model.model_copy(update={"pretrained": str(path)}),
                                           groups.lora, groups.pooling).settings())
    raise ValueError(f"checkpoint: {path} is neither an encoder folder nor a .ckpt file")
