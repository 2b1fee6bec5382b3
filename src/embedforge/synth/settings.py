"""Typed, validated settings for `embedforge-generate`, built from the composed Hydra config.

Every check raises ConfigError whose message starts with the dotted config key at fault, so a bad
run stops before the first request is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from embedforge.synth.taxonomy import BRAINSTORM_TYPES, TASK_TYPES, XLMR_LANGUAGES


class ConfigError(ValueError):
    """A config value is wrong; the message names the key."""


@dataclass(frozen=True)
class Weighted:
    """A discrete distribution: values with positive weights (uniform when built from a list)."""

    values: tuple[str, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class ClientSettings:
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    requests_per_minute: float = 0.0  # 0 = unlimited
    tokens_per_minute: float = 0.0  # 0 = unlimited
    timeout_s: float = 120.0
    max_retries: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class GeneratorSettings:
    model: str = "gpt-4o-mini"
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 2048
    send_seed: bool = True  # pass the per-item seed to the API (also part of the cache key)


@dataclass(frozen=True)
class SynthSettings:
    tasks: Weighted
    languages: Weighted
    placeholders: dict[str, dict[str, Weighted]]
    brainstorm_calls: int = 4
    tasks_per_call: int = 20


@dataclass(frozen=True)
class GenerateSettings:
    synth: SynthSettings
    out_dir: Path
    num_examples: int = 100
    seed: int = 0
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    price_input_per_m: float = 0.0
    price_output_per_m: float = 0.0
    dry_run: bool = False
    dry_run_prompts: int = 3
    progress: bool = True
    fsync: bool = False

    @property
    def cache_path(self) -> Path:
        return self.out_dir / "cache.jsonl"

    @property
    def source(self) -> str:
        return f"synthetic:{self.generator.model}"


def _num(value: Any, key: str, *, minimum: float | None = None, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value!r}")
    return int(value) if integer else float(value)


def _weights(mapping: Any, key: str) -> dict[str, float]:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{key}: expected a mapping of name -> weight, got {mapping!r}")
    out = {str(k): _num(v, f"{key}.{k}", minimum=0.0) for k, v in mapping.items()}
    if sum(out.values()) <= 0:
        raise ConfigError(f"{key}: weights must sum to a positive number, got {out}")
    return out


def _distribution(raw: Any, key: str) -> Weighted:
    """A placeholder's values: a list (uniform) or a mapping value -> weight."""
    if isinstance(raw, Mapping):
        w = _weights(raw, key)
        return Weighted(tuple(w), tuple(w.values()))
    if isinstance(raw, (list, tuple)) and raw:
        values = tuple(str(v) for v in raw)
        return Weighted(values, tuple(1.0 for _ in values))
    raise ConfigError(f"{key}: expected a non-empty list of values or a value -> weight mapping")


def parse_tasks(raw: Any, key: str = "synth.tasks") -> Weighted:
    w = _weights(raw, key)
    for name in w:
        if name not in TASK_TYPES:
            raise ConfigError(f"{key}.{name}: unknown task type (expected one of: {', '.join(TASK_TYPES)})")
    kept = {k: v for k, v in w.items() if v > 0}
    return Weighted(tuple(kept), tuple(kept.values()))


def parse_languages(raw: Any, key: str = "synth.languages") -> Weighted:
    """`weights` names languages explicitly; `rest` is shared evenly by every other XLM-R language."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping with 'weights' and 'rest'")
    unknown = set(raw) - {"weights", "rest"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key (expected 'weights' and 'rest')")
    named = raw.get("weights") or {}
    if not isinstance(named, Mapping):
        raise ConfigError(f"{key}.weights: expected a mapping of language code -> weight")
    weights: dict[str, float] = {}
    for code, w in named.items():
        if str(code) not in XLMR_LANGUAGES:
            raise ConfigError(
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
        raise ConfigError(f"{key}: language weights (weights + rest) must sum to a positive number")
    return Weighted(tuple(kept), tuple(kept.values()))


def _reweight(dist: Weighted, raw: Any, key: str) -> Weighted:
    """Overlay value -> weight on a value list; values not named keep weight 1."""
    if raw and not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping value -> weight")
    w = {str(v): _num(x, f"{key}.{v}", minimum=0.0) for v, x in (raw or {}).items()}
    for value in w:
        if value not in dist.values:
            raise ConfigError(f"{key}.{value}: not one of the placeholder's values ({', '.join(dist.values)})")
    weights = tuple(w.get(v, base) for v, base in zip(dist.values, dist.weights))
    if sum(weights) <= 0:
        raise ConfigError(f"{key}: weights must sum to a positive number")
    return Weighted(dist.values, weights)


def parse_placeholders(
    raw: Any, weights_raw: Any = None, key: str = "synth.placeholders", wkey: str = "synth.placeholder_weights"
) -> dict[str, dict[str, Weighted]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping task type -> placeholder -> values")
    out: dict[str, dict[str, Weighted]] = {}
    for task, names in raw.items():
        if task not in TASK_TYPES:
            raise ConfigError(f"{key}.{task}: unknown task type (expected one of: {', '.join(TASK_TYPES)})")
        if not isinstance(names, Mapping):
            raise ConfigError(f"{key}.{task}: expected a mapping placeholder -> values")
        out[task] = {str(n): _distribution(v, f"{key}.{task}.{n}") for n, v in (names or {}).items()}
    if not isinstance(weights_raw or {}, Mapping):
        raise ConfigError(f"{wkey}: expected a mapping task type -> placeholder -> value -> weight")
    for task, names in (weights_raw or {}).items():
        for name, w in (names or {}).items():
            if name not in out.get(task, {}):
                raise ConfigError(f"{wkey}.{task}.{name}: no such placeholder in {key}.{task}")
            out[task][name] = _reweight(out[task][name], w, f"{wkey}.{task}.{name}")
    return out


def _section(raw: Mapping, name: str) -> Mapping:
    sec = raw.get(name) or {}
    if not isinstance(sec, Mapping):
        raise ConfigError(f"{name}: expected a mapping")
    return sec


def _dataclass_from(cls, raw: Mapping, key: str):
    allowed = set(cls.__dataclass_fields__)
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}: unknown key (expected one of: {', '.join(sorted(allowed))})")
    return cls(**dict(raw))


def settings_from_dict(raw: Mapping[str, Any]) -> GenerateSettings:
    """Validate the whole (resolved, plain-dict) config; raise ConfigError naming the bad key."""
    synth_raw = _section(raw, "synth")
    tasks = parse_tasks(synth_raw.get("tasks"))
    languages = parse_languages(synth_raw.get("languages"))
    placeholders = parse_placeholders(synth_raw.get("placeholders"), synth_raw.get("placeholder_weights"))
    brainstorm = _section(synth_raw, "brainstorm")
    synth = SynthSettings(
        tasks=tasks,
        languages=languages,
        placeholders=placeholders,
        brainstorm_calls=_num(brainstorm.get("calls_per_type", 4), "synth.brainstorm.calls_per_type", minimum=1, integer=True),
        tasks_per_call=_num(brainstorm.get("tasks_per_call", 20), "synth.brainstorm.tasks_per_call", minimum=1, integer=True),
    )
    if "bitext" in tasks.values and len(languages.values) < 2:
        raise ConfigError(
            "synth.tasks.bitext: bitext needs at least two languages with weight > 0 in synth.languages "
            "(set synth.tasks.bitext=0 for a single-language run)"
        )
    gen = _dataclass_from(GeneratorSettings, _section(raw, "generator"), "generator")
    _num(gen.temperature, "generator.temperature", minimum=0.0)
    _num(gen.top_p, "generator.top_p", minimum=0.0)
    _num(gen.max_tokens, "generator.max_tokens", minimum=1, integer=True)
    client = _dataclass_from(ClientSettings, _section(raw, "client"), "client")
    _num(client.concurrency, "client.concurrency", minimum=1, integer=True)
    _num(client.max_retries, "client.max_retries", minimum=0, integer=True)
    for name in ("requests_per_minute", "tokens_per_minute", "backoff_base_s", "backoff_max_s"):
        _num(getattr(client, name), f"client.{name}", minimum=0.0)
    _num(client.timeout_s, "client.timeout_s", minimum=0.001)
    if not client.api_key_env or not str(client.api_key_env).isidentifier():
        raise ConfigError(f"client.api_key_env: must be the NAME of an environment variable, got {client.api_key_env!r}")
    pricing = _section(raw, "pricing")
    if not raw.get("out_dir"):
        raise ConfigError("out_dir: must be set")
    return GenerateSettings(
        synth=synth,
        out_dir=Path(str(raw["out_dir"])),
        num_examples=_num(raw.get("num_examples", 100), "num_examples", minimum=0, integer=True),
        seed=_num(raw.get("seed", 0), "seed", integer=True),
        generator=gen,
        client=client,
        price_input_per_m=_num(pricing.get("input_per_million", 0.0), "pricing.input_per_million", minimum=0.0),
        price_output_per_m=_num(pricing.get("output_per_million", 0.0), "pricing.output_per_million", minimum=0.0),
        dry_run=bool(raw.get("dry_run", False)),
        dry_run_prompts=_num(raw.get("dry_run_prompts", 3), "dry_run_prompts", minimum=0, integer=True),
        progress=bool(raw.get("progress", True)),
        fsync=bool(raw.get("fsync", False)),
    )


def brainstorm_types(settings: GenerateSettings) -> list[str]:
    return [t for t in settings.synth.tasks.values if t in BRAINSTORM_TYPES]
