"""Typed, validated settings for `embedforge-generate`, built from the composed Hydra config.

Every check raises SynthConfigError whose message starts with the dotted config key at fault, so a bad
run stops before the first request is sent.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from embedforge.errors import ConfigError
from embedforge.synth.taxonomy import BRAINSTORM_TYPES, TASK_TYPES, XLMR_LANGUAGES


class SynthConfigError(ConfigError):
    """A generate-config value is wrong; the message starts with the dotted key at fault."""


@dataclass(frozen=True)
class Weighted:
    """A discrete distribution: values with positive weights (uniform when built from a list)."""

    values: tuple[str, ...]
    weights: tuple[float, ...]


CLIENT_MODES = ("online", "batch")
RESPONSE_FORMATS = ("json_object", "json_schema")


@dataclass(frozen=True)
class ClientSettings:
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "online"  # online: chat requests now; batch: the Batch API (half price, within a window)
    concurrency: int = 16
    requests_per_minute: float = 0.0  # 0 = unlimited
    tokens_per_minute: float = 0.0  # 0 = unlimited
    timeout_s: float = 120.0
    max_retries: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 120.0  # a server's Retry-After longer than this is capped (and logged)
    retry_connect: bool = False  # connection refused / unknown host: stop at once (false) or retry (true)
    batch_window: str = "24h"  # Batch API completion_window
    batch_poll_s: float = 30.0  # seconds between batch status polls
    batch_max_requests: int = 50000  # requests per batch file (the Batch API's own limit is 50,000)


@dataclass(frozen=True)
class GeneratorSettings:
    """Sampling settings shared by every generator model."""

    model: str = "gpt-4o-mini"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 2048
    send_seed: bool = True  # pass the per-item seed to the API (also part of the cache key)
    response_format: str | None = None  # json_object (JSON mode) | json_schema (structured outputs) | None
    schema_lengths: bool = True  # json_schema: minLength/maxLength bounds (OpenAI's strict mode refuses them)


@dataclass(frozen=True)
class GeneratorSpec:
    """One model of the generator mixture, with its endpoint, share of the items and prices."""

    model: str
    weight: float = 1.0
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    price_input_per_m: float = 0.0
    price_output_per_m: float = 0.0
    response_format: str | None = None
    served_model: str | None = None  # the name the server lists, when it differs from `model` (see pipeline)

    @property
    def source(self) -> str:
        return f"synthetic:{self.served_model or self.model}"

    @property
    def request_model(self) -> str:
        return self.served_model or self.model

    @property
    def endpoint(self) -> tuple[str | None, str]:
        """Generators with the same endpoint share one client (and its rate limits)."""
        return (self.base_url, self.api_key_env)


@dataclass(frozen=True)
class SynthSettings:
    tasks: Weighted
    languages: Weighted
    placeholders: dict[str, dict[str, Weighted]]
    brainstorm_calls: int | None = None  # per brainstorm type; None = follow num_examples
    tasks_per_call: int = 20
    examples_per_task: float = 3.3  # the paper's 500k examples / 150k unique task definitions
    brainstorm_oversample: float = 1.0  # extra calls to make up for duplicate definitions


@dataclass(frozen=True)
class LanguageCheckSettings:
    enabled: bool = False
    max_examples: int = 0  # 0 = all accepted examples


@dataclass(frozen=True)
class GenerateSettings:
    synth: SynthSettings
    out_dir: Path
    num_examples: int = 100
    seed: int = 0
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    generators: tuple[GeneratorSpec, ...] = ()
    client: ClientSettings = field(default_factory=ClientSettings)
    price_input_per_m: float = 0.0
    price_output_per_m: float = 0.0
    batch_discount: float = 0.5  # Batch API price as a share of the online price
    dry_run: bool = False
    dry_run_prompts: int = 3
    progress: bool = True
    fsync: bool = False
    language_check: LanguageCheckSettings = field(default_factory=LanguageCheckSettings)
    est_output_tokens_per_s: float = 60.0  # decode speed assumed by the dry run's time estimate
    est_request_overhead_s: float = 1.0  # per-request latency before the first token (time estimate)
    max_attempts: int = 8  # attempts per item (and per brainstorm call) across all runs
    attempts_per_run: int = 4  # new (sent) attempts per item and brainstorm call in one run
    check_models: bool = True  # ask the server's /v1/models whether each generator model is served

    def __post_init__(self) -> None:
        if not self.generators:  # no mixture: the single model of `generator` on `client`'s endpoint
            single = GeneratorSpec(
                model=self.generator.model, weight=1.0, base_url=self.client.base_url,
                api_key_env=self.client.api_key_env, price_input_per_m=self.price_input_per_m,
                price_output_per_m=self.price_output_per_m, response_format=self.generator.response_format,
            )
            object.__setattr__(self, "generators", (single,))

    @property
    def cache_path(self) -> Path:
        return self.out_dir / "cache.jsonl"

    @property
    def source(self) -> str:
        return self.generators[0].source

    @property
    def generator_weights(self) -> Weighted:
        return Weighted(tuple(str(i) for i in range(len(self.generators))), tuple(g.weight for g in self.generators))


def _num(value: Any, key: str, *, minimum: float | None = None, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SynthConfigError(f"{key}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise SynthConfigError(f"{key}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SynthConfigError(f"{key}: must be >= {minimum}, got {value!r}")
    return int(value) if integer else float(value)


def _weights(mapping: Any, key: str) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        raise SynthConfigError(f"{key}: expected a mapping of name -> weight, got {mapping!r}")
    out = {str(k): _num(v, f"{key}.{k}", minimum=0.0) for k, v in mapping.items()}
    if sum(out.values()) <= 0:
        raise SynthConfigError(f"{key}: weights must sum to a positive number, got {out}")
    return out


def _distribution(raw: Any, key: str) -> Weighted:
    """A placeholder's values: a list (uniform) or a mapping value -> weight."""
    if isinstance(raw, Mapping):
        w = _weights(raw, key)
        return Weighted(tuple(w), tuple(w.values()))
    if isinstance(raw, (list, tuple)) and raw:
        values = tuple(str(v) for v in raw)
        return Weighted(values, tuple(1.0 for _ in values))
    raise SynthConfigError(f"{key}: expected a non-empty list of values or a value -> weight mapping")


def parse_tasks(raw: Any, key: str = "synth.tasks") -> Weighted:
    w = _weights(raw, key)
    for name in w:
        if name not in TASK_TYPES:
            raise SynthConfigError(f"{key}.{name}: unknown task type (expected one of: {', '.join(TASK_TYPES)})")
    kept = {k: v for k, v in w.items() if v > 0}
    return Weighted(tuple(kept), tuple(kept.values()))


def parse_languages(raw: Any, key: str = "synth.languages") -> Weighted:
    """`weights` names languages explicitly; `rest` is shared evenly by every other XLM-R language."""
    if not isinstance(raw, Mapping):
        raise SynthConfigError(f"{key}: expected a mapping with 'weights' and 'rest'")
    unknown = set(raw) - {"weights", "rest"}
    if unknown:
        raise SynthConfigError(f"{key}.{sorted(unknown)[0]}: unknown key (expected 'weights' and 'rest')")
    named = raw.get("weights") or {}
    if not isinstance(named, Mapping):
        raise SynthConfigError(f"{key}.weights: expected a mapping of language code -> weight")
    weights: dict[str, float] = {}
    for code, w in named.items():
        if str(code) not in XLMR_LANGUAGES:
            raise SynthConfigError(
                f"{key}.weights.{code}: unknown language code (expected an ISO 639-1 code from "
                f"XLM-R's list, e.g. en, zh, de)"
            )
        weights[str(code)] = _num(w, f"{key}.weights.{code}", minimum=0.0)
    rest = _num(raw.get("rest", 0.0), f"{key}.rest", minimum=0.0)
    others = [c for c in XLMR_LANGUAGES if c not in weights]
    for code in others:
        weights[code] = rest / len(others) if others else 0.0
    kept = {k: v for k, v in weights.items() if v > 0}
    if not kept:
        raise SynthConfigError(f"{key}: language weights (weights + rest) must sum to a positive number")
    return Weighted(tuple(kept), tuple(kept.values()))


def _reweight(dist: Weighted, raw: Any, key: str) -> Weighted:
    """Overlay value -> weight on a value list; values not named keep weight 1."""
    if raw and not isinstance(raw, Mapping):
        raise SynthConfigError(f"{key}: expected a mapping value -> weight")
    w = {str(v): _num(x, f"{key}.{v}", minimum=0.0) for v, x in (raw or {}).items()}
    for value in w:
        if value not in dist.values:
            raise SynthConfigError(f"{key}.{value}: not one of the placeholder's values ({', '.join(dist.values)})")
    weights = tuple(w.get(v, base) for v, base in zip(dist.values, dist.weights))
    if sum(weights) <= 0:
        raise SynthConfigError(f"{key}: weights must sum to a positive number")
    return Weighted(dist.values, weights)


def parse_placeholders(
    raw: Any, weights_raw: Any = None, key: str = "synth.placeholders", wkey: str = "synth.placeholder_weights"
) -> dict[str, dict[str, Weighted]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SynthConfigError(f"{key}: expected a mapping task type -> placeholder -> values")
    out: dict[str, dict[str, Weighted]] = {}
    for task, names in raw.items():
        if task not in TASK_TYPES:
            raise SynthConfigError(f"{key}.{task}: unknown task type (expected one of: {', '.join(TASK_TYPES)})")
        if not isinstance(names, Mapping):
            raise SynthConfigError(f"{key}.{task}: expected a mapping placeholder -> values")
        out[task] = {str(n): _distribution(v, f"{key}.{task}.{n}") for n, v in (names or {}).items()}
    if not isinstance(weights_raw or {}, Mapping):
        raise SynthConfigError(f"{wkey}: expected a mapping task type -> placeholder -> value -> weight")
    for task, names in (weights_raw or {}).items():
        for name, w in (names or {}).items():
            if name not in out.get(task, {}):
                raise SynthConfigError(f"{wkey}.{task}.{name}: no such placeholder in {key}.{task}")
            out[task][name] = _reweight(out[task][name], w, f"{wkey}.{task}.{name}")
    return out


def _section(raw: Mapping, name: str) -> Mapping:
    sec = raw.get(name) or {}
    if not isinstance(sec, Mapping):
        raise SynthConfigError(f"{name}: expected a mapping")
    return sec


def _dataclass_from(cls, raw: Mapping, key: str):
    allowed = set(cls.__dataclass_fields__)
    for k in raw:
        if k not in allowed:
            raise SynthConfigError(f"{key}.{k}: unknown key (expected one of: {', '.join(sorted(allowed))})")
    return cls(**dict(raw))


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SynthConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _env_name(value: Any, key: str) -> str:
    if not value or not str(value).isidentifier():
        raise SynthConfigError(f"{key}: must be the NAME of an environment variable, got {value!r}")
    return str(value)


def _response_format(value: Any, key: str) -> str | None:
    if value in (None, "", "none"):
        return None
    if value not in RESPONSE_FORMATS:
        raise SynthConfigError(f"{key}: expected null or one of {', '.join(RESPONSE_FORMATS)}, got {value!r}")
    return str(value)


def parse_generators(
    raw: Any, gen: GeneratorSettings, client: ClientSettings, price_in: float, price_out: float, key: str = "generators"
) -> tuple[GeneratorSpec, ...]:
    """The mixture: a list of {model, weight, base_url, api_key_env, pricing, response_format}.

    Keys an item leaves out come from `generator`, `client` and `pricing`; null or [] = one model.
    """
    if raw in (None, [], ()):
        return ()
    if not isinstance(raw, (list, tuple)):
        raise SynthConfigError(f"{key}: expected a list of generator entries (model, weight, ...), got {raw!r}")
    allowed = {"model", "weight", "base_url", "api_key_env", "pricing", "response_format"}
    specs = []
    for i, item in enumerate(raw):
        k = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            raise SynthConfigError(f"{k}: expected a mapping with at least 'model', got {item!r}")
        for name in item:
            if name not in allowed:
                raise SynthConfigError(f"{k}.{name}: unknown key (expected one of: {', '.join(sorted(allowed))})")
        model = item.get("model")
        if not isinstance(model, str) or not model.strip():
            raise SynthConfigError(f"{k}.model: expected a model name, got {model!r}")
        pricing = item.get("pricing") or {}
        if not isinstance(pricing, Mapping):
            raise SynthConfigError(f"{k}.pricing: expected a mapping input_per_million / output_per_million")
        specs.append(GeneratorSpec(
            model=model.strip(),
            weight=_num(item.get("weight", 1.0), f"{k}.weight", minimum=0.0),
            base_url=item.get("base_url", client.base_url) or None,
            api_key_env=_env_name(item.get("api_key_env", client.api_key_env), f"{k}.api_key_env"),
            price_input_per_m=_num(pricing.get("input_per_million", price_in), f"{k}.pricing.input_per_million", minimum=0.0),
            price_output_per_m=_num(pricing.get("output_per_million", price_out), f"{k}.pricing.output_per_million", minimum=0.0),
            response_format=_response_format(item.get("response_format", gen.response_format), f"{k}.response_format"),
        ))
    if sum(g.weight for g in specs) <= 0:
        raise SynthConfigError(f"{key}: weights must sum to a positive number")
    return tuple(specs)


def settings_from_dict(raw: Mapping[str, Any]) -> GenerateSettings:
    """Validate the whole (resolved, plain-dict) config; raise SynthConfigError naming the bad key."""
    synth_raw = _section(raw, "synth")
    tasks = parse_tasks(synth_raw.get("tasks"))
    languages = parse_languages(synth_raw.get("languages"))
    placeholders = parse_placeholders(synth_raw.get("placeholders"), synth_raw.get("placeholder_weights"))
    brainstorm = _section(synth_raw, "brainstorm")
    calls = brainstorm.get("calls_per_type")
    synth = SynthSettings(
        tasks=tasks,
        languages=languages,
        placeholders=placeholders,
        brainstorm_calls=None if calls in (None, "auto") else _num(calls, "synth.brainstorm.calls_per_type", minimum=1, integer=True),
        tasks_per_call=_num(brainstorm.get("tasks_per_call", 20), "synth.brainstorm.tasks_per_call", minimum=1, integer=True),
        examples_per_task=_num(synth_raw.get("examples_per_task", 3.3), "synth.examples_per_task", minimum=0.01),
        brainstorm_oversample=_num(brainstorm.get("oversample", 1.0), "synth.brainstorm.oversample", minimum=1.0),
    )
    if "bitext" in tasks.values and len(languages.values) < 2:
        raise SynthConfigError(
            "synth.tasks.bitext: bitext needs at least two languages with weight > 0 in synth.languages "
            "(set synth.tasks.bitext=0 for a single-language run)"
        )
    gen = _dataclass_from(GeneratorSettings, _section(raw, "generator"), "generator")
    _num(gen.temperature, "generator.temperature", minimum=0.0)
    _num(gen.top_p, "generator.top_p", minimum=0.0)
    _num(gen.max_tokens, "generator.max_tokens", minimum=1, integer=True)
    gen = replace(gen, response_format=_response_format(gen.response_format, "generator.response_format"))
    _bool(gen.schema_lengths, "generator.schema_lengths")
    client = _dataclass_from(ClientSettings, _section(raw, "client"), "client")
    _num(client.concurrency, "client.concurrency", minimum=1, integer=True)
    _num(client.max_retries, "client.max_retries", minimum=0, integer=True)
    _num(client.batch_max_requests, "client.batch_max_requests", minimum=1, integer=True)
    for name in ("requests_per_minute", "tokens_per_minute", "backoff_base_s", "backoff_max_s", "max_retry_after_s"):
        _num(getattr(client, name), f"client.{name}", minimum=0.0)
    _num(client.timeout_s, "client.timeout_s", minimum=0.001)
    _num(client.batch_poll_s, "client.batch_poll_s", minimum=0.001)
    _bool(client.retry_connect, "client.retry_connect")
    if not re.fullmatch(r"\d+(\.\d+)?[hms]", str(client.batch_window)):
        raise SynthConfigError(f"client.batch_window: expected a duration such as 24h, got {client.batch_window!r}")
    if client.mode not in CLIENT_MODES:
        raise SynthConfigError(f"client.mode: expected one of {', '.join(CLIENT_MODES)}, got {client.mode!r}")
    _env_name(client.api_key_env, "client.api_key_env")
    pricing = _section(raw, "pricing")
    price_in = _num(pricing.get("input_per_million", 0.0), "pricing.input_per_million", minimum=0.0)
    price_out = _num(pricing.get("output_per_million", 0.0), "pricing.output_per_million", minimum=0.0)
    generators = parse_generators(raw.get("generators"), gen, client, price_in, price_out)
    lang_raw = _section(raw, "language_check")
    lang = _dataclass_from(LanguageCheckSettings, lang_raw, "language_check")
    _bool(lang.enabled, "language_check.enabled")
    _num(lang.max_examples, "language_check.max_examples", minimum=0, integer=True)
    estimate = _section(raw, "estimate")
    max_attempts = _num(raw.get("max_attempts", 8), "max_attempts", minimum=1, integer=True)
    attempts_per_run = _num(raw.get("attempts_per_run", 4), "attempts_per_run", minimum=1, integer=True)
    check_out_dir_value(raw.get("out_dir"))
    return GenerateSettings(
        synth=synth,
        out_dir=Path(str(raw["out_dir"])),
        num_examples=_num(raw.get("num_examples", 100), "num_examples", minimum=0, integer=True),
        seed=_num(raw.get("seed", 0), "seed", integer=True),
        generator=gen,
        generators=generators,
        client=client,
        price_input_per_m=price_in,
        price_output_per_m=price_out,
        batch_discount=_num(pricing.get("batch_discount", 0.5), "pricing.batch_discount", minimum=0.0),
        dry_run=bool(raw.get("dry_run", False)),
        dry_run_prompts=_num(raw.get("dry_run_prompts", 3), "dry_run_prompts", minimum=0, integer=True),
        progress=bool(raw.get("progress", True)),
        fsync=bool(raw.get("fsync", False)),
        language_check=lang,
        est_output_tokens_per_s=_num(estimate.get("output_tokens_per_s", 60.0), "estimate.output_tokens_per_s", minimum=0.001),
        est_request_overhead_s=_num(estimate.get("request_overhead_s", 1.0), "estimate.request_overhead_s", minimum=0.0),
        max_attempts=max_attempts,
        attempts_per_run=attempts_per_run,
        check_models=_bool(raw.get("check_models", True), "check_models"),
    )


def check_out_dir_value(value: Any) -> None:
    """`out_dir` must be a non-empty path (an empty one would put Hydra's folder at the filesystem root)."""
    if value is None or not str(value).strip():
        raise SynthConfigError("out_dir: must be set to a folder path (it is empty)")


def check_out_dir_writable(out_dir: Any) -> None:
    """Fail with `out_dir: ...` unless the folder exists and is writable, or could be created.

    Called before Hydra creates its run folder inside out_dir, and again before a run writes.
    """
    check_out_dir_value(out_dir)
    path = Path(str(out_dir)).expanduser()
    probe = path
    while not probe.exists():  # the nearest existing ancestor decides whether mkdir -p can work
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is not a folder"
        raise SynthConfigError(f"out_dir: {path} {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == path else f"cannot be created: {probe} is not writable"
        raise SynthConfigError(f"out_dir: {path} {what}")


def brainstorm_types(settings: GenerateSettings) -> list[str]:
    return [t for t in settings.synth.tasks.values if t in BRAINSTORM_TYPES]


def planned_unique_tasks(settings: GenerateSettings) -> int:
    """How many task definitions step 1 should yield: num_examples / examples_per_task (paper: 3.3)."""
    return math.ceil(settings.num_examples / settings.synth.examples_per_task) if settings.num_examples else 0


def brainstorm_calls_per_type(settings: GenerateSettings) -> dict[str, int]:
    """Step-1 calls per brainstormed task type.

    A fixed `synth.brainstorm.calls_per_type` wins. Otherwise the planned unique tasks are shared
    among the brainstormed types by their task weights (STS and bitext have fixed definitions), and
    each type gets enough calls of `tasks_per_call` for its share (times `oversample`), at least one.
    """
    types = brainstorm_types(settings)
    synth = settings.synth
    if synth.brainstorm_calls is not None:
        return {t: synth.brainstorm_calls for t in types}
    weights = dict(zip(synth.tasks.values, synth.tasks.weights))
    total = sum(weights[t] for t in types)
    planned = planned_unique_tasks(settings)
    return {
        t: max(1, math.ceil(planned * weights[t] / total * synth.brainstorm_oversample / synth.tasks_per_call))
        for t in types
    }
