"""LoRA on all linear layers: the paper's 42M on Mistral-7B, and the decoder paths on the tiny model."""

import pytest
import torch
from transformers import AutoModel, MistralConfig

from embedforge.model.builder import encoder_from_pretrained

from embedforge.model.lora import LoraSettings, apply_lora, count_trainable, linear_layer_names

# mistralai/Mistral-7B-v0.1 config.json (architecture fields), so no download is needed.
MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                  rope_theta=10000.0, sliding_window=4096)


def test_mistral_7b_r16_all_linear_has_the_papers_trainable_parameter_count():
    with torch.device("meta"):
        model = AutoModel.from_config(MistralConfig(**MISTRAL_7B))
    assert linear_layer_names(model) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    peft_model = apply_lora(model, LoraSettings(r=16, alpha=32, dropout=0.1))
    assert count_trainable(peft_model) == 41_943_040


def test_lora_rank_scales_parameter_count():
    with torch.device("meta"):
        model = AutoModel.from_config(MistralConfig(**MISTRAL_7B))
    assert count_trainable(apply_lora(model, LoraSettings(r=8))) == 41_943_040 // 2


def test_bert_pooler_is_not_adapted():
    from embedforge.model.loading import load_backbone

    model, _ = load_backbone("embedded:all-MiniLM-L6-v2")
    names = linear_layer_names(model)
    assert "dense" in names and "query" in names
    peft_model = apply_lora(model, LoraSettings(r=4))
    assert not [n for n, p in peft_model.named_parameters() if p.requires_grad and "pooler" in n]


def test_gradient_checkpointing_gives_the_same_lora_gradients(tiny_mistral_path):
    texts = ["Instruct: find it\nQuery: rope", "a document about rotary embeddings", "x y z"]
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        enc = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", lora=LoraSettings(r=4, dropout=0.0),
                                      gradient_checkpointing=checkpointing)
        # Perturb LoRA B (zero at init) so the adapter changes the output and has full gradients.
        for name, param in enc.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.1)
        enc.train()
        feats = enc.tokenize(texts)
        enc(feats["input_ids"], feats["attention_mask"]).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in enc.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in grads[0].values())


# ---------------------------------------------------------------------------------------------- shared dropout
def _copies(model, r=4, dropout=0.0):
    import copy

    ref = apply_lora(copy.deepcopy(model), LoraSettings(r=r, dropout=dropout, share_dropout=False))
    new = apply_lora(copy.deepcopy(model), LoraSettings(r=r, dropout=dropout))
    for name, param in ref.named_parameters():
        if "lora_B" in name:  # zero at init: perturb so the adapter changes the output
            torch.nn.init.normal_(param, std=0.1)
    new.load_state_dict(ref.state_dict())
    return ref, new


def test_lean_lora_forward_equals_pefts_without_dropout(tiny_mistral_path):
    """Same outputs and LoRA gradients as peft's own forward (dropout 0), and the same state dict."""
    from embedforge.model.lora import SharedDropoutLoraLinear

    model = AutoModel.from_pretrained(str(tiny_mistral_path), dtype=torch.float32)
    ref, new = _copies(model)
    assert ref.state_dict().keys() == new.state_dict().keys()
    assert sum(isinstance(m, SharedDropoutLoraLinear) for m in new.modules()) == 14  # 7 per layer, 2 layers
    assert not any(isinstance(m, SharedDropoutLoraLinear) for m in ref.modules())
    ids = torch.randint(3, 500, (2, 7))
    results = []
    for peft_model in (ref, new):
        peft_model.train()
        out = peft_model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        out.pow(2).sum().backward()
        results.append((out.detach(), {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    for name, grad in results[0][1].items():
        assert torch.allclose(grad, results[1][1][name], atol=1e-5, rtol=1e-4), name


class _Siblings(torch.nn.Module):
    """q, k, v read one input (as in attention); o reads another."""

    def __init__(self, width=8):
        super().__init__()
        self.width = width
        self.q, self.k, self.v, self.o = (torch.nn.Linear(width, 5) for _ in range(4))

    def forward(self, x):
        return self.o(torch.tanh(self.q(x) * self.k(x) + self.v(x)) @ torch.ones(5, self.width))


@pytest.mark.parametrize("block_elements, shape", [
    (1 << 22, (3, 4, 8)),  # one block; width 8: the mask is kept bit-packed
    (7, (3, 4, 8)),        # one row a block
    (1 << 22, (2, 6)),     # width 6: kept as bool
])
def test_siblings_share_one_mask_and_match_the_formula(monkeypatch, block_elements, shape):
    import embedforge.model.lora as lora_module

    monkeypatch.setattr(lora_module, "_BLOCK_ELEMENTS", block_elements)

    drawn = []
    dropout_input = lora_module.dropout_input

    def recording(x, p):
        keep, dropped, keep_scale = dropout_input(x, p)
        drawn.append(lora_module.keep_mask(keep, x.shape))
        assert keep.dtype == (torch.uint8 if x.shape[-1] % 8 == 0 else torch.bool)  # packed when it can be
        assert keep_scale == 2.0 and torch.equal(dropped, x * drawn[-1])
        return keep, dropped, keep_scale
    monkeypatch.setattr(lora_module, "dropout_input", recording)
    torch.manual_seed(0)
    model = apply_lora(_Siblings(shape[-1]), LoraSettings(r=2, alpha=4, dropout=0.5, target_modules=["q", "k", "v", "o"]))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    model.train()
    x = torch.randn(*shape, requires_grad=True)
    out = model(x)
    assert len(drawn) == 2  # one mask for q/k/v's shared input, one for o's
    assert drawn[0].dtype == torch.bool and 0 < drawn[0].float().mean() < 1  # Bernoulli(0.5)

    # Independent reference: the LoRA formula by hand with the masks that were drawn.
    inner = model.base_model.model
    def adapted(layer, inp, mask):
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        return layer.base_layer(inp) + (inp * mask / 0.5) @ a.t() @ b.t() * layer.scaling["default"]
    q, k, v = (adapted(getattr(inner, n), x, drawn[0]) for n in "qkv")
    hidden = torch.tanh(q * k + v) @ torch.ones(5, shape[-1])
    expected = adapted(inner.o, hidden, drawn[1])
    assert torch.allclose(out, expected, atol=1e-6)
    grads = torch.autograd.grad(out.pow(2).sum(), [x] + [p for p in model.parameters() if p.requires_grad])
    expected_grads = torch.autograd.grad(expected.pow(2).sum(), [x] + [p for p in model.parameters() if p.requires_grad])
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-5)

    model.eval()  # no dropout at inference: plain LoRA, no masks drawn
    drawn.clear()
    model(x)
    assert not drawn


def test_bert_draws_one_mask_per_distinct_input(monkeypatch):
    import embedforge.model.lora as lora_module
    from embedforge.model.loading import load_backbone

    drawn = []
    dropout_input = lora_module.dropout_input
    monkeypatch.setattr(lora_module, "dropout_input", lambda x, p: drawn.append(1) or dropout_input(x, p))
    model, _ = load_backbone("embedded:all-MiniLM-L6-v2")
    peft_model = apply_lora(model, LoraSettings(r=4, dropout=0.1))
    peft_model.train()
    ids = torch.randint(1000, 2000, (2, 5))
    peft_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    # 6 adapted linears a layer (query, key, value, attention output, intermediate, output), 6 layers:
    # query/key/value share their input, so 4 masks a layer instead of 6.
    assert len(drawn) == 4 * 6


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_masks_are_bernoulli_p_and_independent_across_lanes(p):
    """Four mask elements come from one 64-bit word: each lane must drop with probability p on its
    own, and neighbours (lanes of one word, and words) must not move together."""
    from embedforge.model.lora import dropout_input, effective_p, keep_mask

    assert abs(effective_p(p) - p) <= 2 ** -17
    x = torch.rand(1000, 1024) + 1.0
    torch.manual_seed(0)
    keep, dropped, keep_scale = dropout_input(x, p)
    assert keep_scale == 1 / (1 - effective_p(p))
    kept = keep_mask(keep, x.shape)
    assert torch.equal(dropped, torch.where(kept, x, 0.0))
    drop = (~kept).float()
    n = drop.numel()
    tolerance = 5 * (p * (1 - p) / (n / 4)) ** 0.5  # five standard errors, per lane
    lanes = drop.view(-1, 4)
    assert torch.all((lanes.mean(0) - p).abs() < tolerance)
    centred = drop.view(-1) - drop.mean()
    for lag in (1, 2, 3, 4, 1024):  # within a word, the next word, the next row
        corr = (centred[:-lag] * centred[lag:]).mean() / centred.pow(2).mean()
        assert abs(corr) < 5 / n ** 0.5, lag
    torch.manual_seed(0)
    assert torch.equal(dropout_input(x, p)[0], keep)  # the global RNG replays it


def test_packed_masks_round_trip():
    from embedforge.model.lora import pack_mask, unpack_mask

    every_byte = ((torch.arange(256).unsqueeze(-1) >> torch.arange(8)) & 1).bool()  # bit i -> element i
    assert torch.equal(pack_mask(every_byte), torch.arange(256, dtype=torch.uint8))
    assert torch.equal(unpack_mask(torch.arange(256, dtype=torch.uint8), (256, 8)), every_byte)
    mask = torch.rand(4, 10, 16) < 0.3
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == mask.numel() // 8
    assert torch.equal(unpack_mask(packed, mask.shape), mask)


def test_lean_forward_with_a_trainable_base_and_bias_matches_pefts():
    """Full fine-tuning plus an adapter (base weight and bias trainable): the one-node forward must
    give the base's gradients too."""
    torch.manual_seed(0)
    ref, new = _copies(_Siblings(), r=2)
    for model in (ref, new):
        for name, param in model.named_parameters():
            if "base_layer" in name:
                param.requires_grad_(True)
    x = torch.randn(3, 4, 8, requires_grad=True)
    results = []
    for model in (ref, new):
        model.train()
        out = model(x)
        params = [p for p in model.parameters() if p.requires_grad]
        results.append((out, torch.autograd.grad(out.pow(2).sum(), [x] + params)))
    assert len(results[1][1]) == 1 + 4 * 4  # x, and for q/k/v/o: weight, bias, A, B
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    for got, want in zip(results[1][1], results[0][1]):
        assert torch.allclose(got, want, atol=1e-5)


def test_lean_forward_under_bf16_autocast_matches_pefts():
    """Under autocast both forwards compute in bf16 (rounded in different places, so compared by
    relative error of the whole tensor); gradients land in the parameters' fp32."""
    torch.manual_seed(0)
    ref, new = _copies(_Siblings(), r=2)
    x = torch.randn(3, 4, 8)
    results = []
    for model in (ref, new):
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        assert out.dtype == torch.bfloat16
        out.float().pow(2).sum().backward()
        results.append((out.float(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    def rel_err(got, want):
        return ((got - want).norm() / want.norm()).item()
    assert rel_err(results[1][0], results[0][0]) < 1e-2
    for name, grad in results[0][1].items():
        assert results[1][1][name].dtype == torch.float32
        assert rel_err(results[1][1][name], grad) < 3e-2, name


def test_layers_with_forward_hooks_take_pefts_forward(monkeypatch):
    """A hook on the layer (DeepSpeed ZeRO-3 gathers parameters in them) must run: no direct weight reads."""
    import embedforge.model.lora as lora_module

    calls = []
    apply = lora_module._LoraLinear.apply
    monkeypatch.setattr(lora_module._LoraLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    model = apply_lora(_Siblings(), LoraSettings(r=2, dropout=0.0, target_modules=["q", "k", "v", "o"]))
    model(torch.randn(2, 8))
    assert len(calls) == 4
    calls.clear()
    seen = []
    model.base_model.model.q.base_layer.register_forward_pre_hook(lambda *_: seen.append(1))
    model(torch.randn(2, 8))
    assert seen == [1] and len(calls) == 3


# ---------------------------------------------------------------------------------------------- issue 18 defects
def _mask_caches(model):
    return {id(m._mask_cache): m._mask_cache for m in model.modules() if getattr(m, "_mask_cache", None) is not None}


def test_checkpointing_early_stop_leaves_no_cached_inputs_after_backward(tiny_mistral_path):
    """Non-reentrant checkpointing stops the recompute as soon as the last saved tensor is rebuilt,
    i.e. inside the last adapted layer of each block: the hook that empties the shared-input cache
    must still run, or every block's input, dropped copy and mask outlive backward."""
    from torch.utils.checkpoint import set_checkpoint_early_stop

    torch.manual_seed(0)
    enc = encoder_from_pretrained(str(tiny_mistral_path), pooling="last_token", lora=LoraSettings(r=4, dropout=0.1),
                                  gradient_checkpointing=True)
    enc.train()
    caches = _mask_caches(enc)
    assert len(caches) == 4  # self_attn and mlp of 2 layers
    feats = enc.tokenize(["Instruct: find it\nQuery: rope", "a document about rotary embeddings"])
    with set_checkpoint_early_stop(True):
        enc(feats["input_ids"], feats["attention_mask"]).pow(2).sum().backward()
    assert [c.entry for c in caches.values()] == [None] * len(caches)


class _SubclassedLinear(torch.nn.Linear):
    """Like transformers' FP8 / compressed / bit linear layers: an nn.Linear subclass whose own forward
    does more than `x W^T + b` (here: a scale standing in for dequantisation)."""

    def forward(self, x):
        return super().forward(x) * 3.0


def test_nn_linear_subclasses_with_their_own_forward_take_pefts_forward(monkeypatch):
    import embedforge.model.lora as lora_module

    torch.manual_seed(0)
    model = _Siblings()
    for name in ("q", "k", "v", "o"):
        layer = getattr(model, name)
        sub = _SubclassedLinear(layer.in_features, layer.out_features)
        sub.load_state_dict(layer.state_dict())
        setattr(model, name, sub)
    ref, new = _copies(model, r=2)
    calls = []
    apply = lora_module._LoraLinear.apply
    monkeypatch.setattr(lora_module._LoraLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    x = torch.randn(3, 4, 8)
    ref.train(), new.train()
    assert torch.allclose(new(x), ref(x), atol=1e-6)
    assert calls == []


def test_lean_forward_has_no_graph_breaks_under_compile():
    """model.compile=true: dynamo must not break the graph in our layer (random_, _version, ...)."""
    import torch._dynamo

    torch.manual_seed(0)
    model = apply_lora(_Siblings(), LoraSettings(r=2, dropout=0.1, target_modules=["q", "k", "v", "o"]))
    model.train()
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, 8))
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]


def test_a_peft_without_lora_variant_takes_pefts_forward(monkeypatch):
    """peft releases before `lora_variant` (the floor allows them): no AttributeError, peft's forward."""
    from embedforge.model.lora import _peft_linear_class

    model = apply_lora(_Siblings(), LoraSettings(r=2, dropout=0.0, target_modules=["q", "k", "v", "o"]))
    layer = model.base_model.model.q
    del layer.lora_variant
    monkeypatch.setattr(_peft_linear_class(), "forward", lambda self, x, *a, **k: "peft's forward")
    assert layer(torch.randn(2, 8)) == "peft's forward"


def test_an_encoder_folder_loads_with_the_lean_forward(tiny_mistral_path, tmp_path):
    """Every load path (folder, .ckpt, run:) gives the same LoRA layer class as a fresh build."""
    from embedforge.model.builder import EncoderSettings, build_encoder, load_encoder
    from embedforge.model.lora import SharedDropoutLoraLinear

    def lean_layers(encoder):
        return sum(type(m) is SharedDropoutLoraLinear for m in encoder.modules())

    built = build_encoder(EncoderSettings(pretrained=str(tiny_mistral_path), dtype="float32",
                                          lora=LoraSettings(r=4)))
    assert lean_layers(built) == 14
    built.save(tmp_path / "enc")
    for trainable in (True, False):
        assert lean_layers(load_encoder(tmp_path / "enc", trainable=trainable)) == 14
    peft_only = build_encoder(EncoderSettings(pretrained=str(tiny_mistral_path), dtype="float32",
                                              lora=LoraSettings(r=4, share_dropout=False)))
    peft_only.save(tmp_path / "peft")
    assert lean_layers(load_encoder(tmp_path / "peft", trainable=True)) == 0


def test_unknown_lora_keys_are_refused_naming_the_key():
    from embedforge.config_schema import bind
    from embedforge.errors import ConfigError
    from embedforge.model.settings import LoraGroup

    with pytest.raises(ConfigError, match=r"^config key 'lora\.use_dorra' is unknown \(known: enabled, r, alpha"):
        bind(LoraGroup, {"enabled": True, "r": 4, "use_dorra": True}, "lora")


def test_a_lora_typo_stops_training_at_start_in_one_line(compose_train):
    from embedforge.train.settings import TrainConfigError
    from embedforge.train.run import train

    with pytest.raises(TrainConfigError, match=r"^config key 'lora\.use_dorra' is unknown") as err:
        train(compose_train("model=tiny-mistral", "+lora.use_dorra=true"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key, value", [("use_dora", True), ("use_rslora", True), ("lora_bias", True)])
def test_known_peft_lora_options_reach_peft(monkeypatch, key, value):
    """use_dora / use_rslora / lora_bias go to peft's LoraConfig; DoRA and a LoRA bias take peft's forward,
    rsLoRA (only a different scaling) keeps ours and still equals peft's."""
    import embedforge.model.lora as lora_module
    from embedforge.config_schema import bind
    from embedforge.model.settings import LoraGroup

    settings = bind(LoraGroup, {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                                "target_modules": ["q", "k", "v", "o"], key: value}, "lora").settings()
    assert settings.extra == {key: value}
    calls = []
    apply = lora_module._LoraLinear.apply
    monkeypatch.setattr(lora_module._LoraLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    import copy
    base = _Siblings()
    ref = apply_lora(copy.deepcopy(base), LoraSettings(**{**vars(settings), "share_dropout": False}))
    new = apply_lora(copy.deepcopy(base), settings)
    assert getattr(new.peft_config["default"], key) is value
    for name, param in ref.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    new.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 8)
    assert torch.allclose(new(x), ref(x), atol=1e-6)
    if key == "use_rslora":
        assert new.base_model.model.q.scaling["default"] == pytest.approx(8 / 2)  # alpha / sqrt(r)
        assert len(calls) == 4
    else:
        assert calls == []
