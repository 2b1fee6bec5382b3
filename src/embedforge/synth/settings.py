"""Typed settings for `embedforge-generate`.

The composed config is bound once, at the CLI, into the schemas below (config_schema.Schema: unknown keys
refused by name, strict types, ranges and choices declared on the fields, the cross-field rules in model
validators), then turned into GenerateSettings, the view the pipeline reads. A bad value stops the run
before the first request with a one-line ConfigError naming the key (`config key 'client.mode': ...`).

SynthConfigError is left for the checks that can only run later and still name a key: an unset API key
variable, a model the server does not serve, a template placeholder the config lacks, an out_dir that
cannot be written.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

from pydantic import (
    AfterValidator, BeforeValidator, Field, NonNegativeInt, PositiveInt, StringConstraints, ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from embedforge.config_schema import Schema, bind
from embedforge.errors import ConfigError
from embedforge.synth.taxonomy import BRAINSTORM_TYPES, TASK_TYPES, XLMR_LANGUAGES


class SynthConfigError(ConfigError):
    """A generate-config value failed a check made at run time; the message starts with the dotted key."""


@dataclass(frozen=True)
class Weighted:
    """A discrete distribution: values with non-negative weights (uniform when built from a list)."""

    values: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, weights: dict[str, float], *, drop_zero: bool = False) -> Weighted:
        kept = {k: w for k, w in weights.items() if w > 0 or not drop_zero}
        return cls(tuple(kept), tuple(kept.values()))


def _fail(loc: tuple[str, ...], message: str) -> NoReturn:
    """Report a cross-field rule at the key it is about (loc, relative to the model being validated);
    a model validator's plain ValueError would be reported at the group's key."""
    error = PydanticCustomError("value_error", "{message}", {"message": message})
    raise ValidationError.from_exception_data("config", [InitErrorDetails(type=error, loc=loc, input=None)])


def _env_name(value: str) -> str:
    if not value.isidentifier():  # the value is not echoed: it may be the key itself
        raise ValueError("must be the NAME of an environment variable holding the key, not the key")
    return value


def window_seconds(window: str) -> float:
    """'24h' / '90m' / '3600s' -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([hms])", window)
    if not match:
        raise ValueError(f"expected a duration such as 24h, got {window!r}")
    return float(match.group(1)) * {"h": 3600, "m": 60, "s": 1}[match.group(2)]


def _duration(window: str) -> str:
    window_seconds(window)
    return window


def _positive_total(weights: dict[str, float]) -> dict[str, float]:
    if sum(weights.values()) <= 0:
        raise ValueError("needs at least one value with a positive weight")
    return weights


def _none_for(*words: str):
    """A before-validator reading these words as null (older configs spell null that way)."""
    return BeforeValidator(lambda value: None if value in words else value)


def _uniform(raw: Any) -> Any:
    return {str(v): 1.0 for v in raw} if isinstance(raw, list) else raw


NonNegative = Annotated[float, Field(ge=0)]
Weight = NonNegative  # relative; a value of weight 0 is never drawn
Positive = Annotated[float, Field(ge=0.001)]  # timeouts, polls, speeds: zero would spin or divide
EnvName = Annotated[str, AfterValidator(_env_name)]
ResponseFormat = Annotated[Literal["json_object", "json_schema"] | None, _none_for("", "none")]
# A placeholder's values: a list (uniform) or a value -> weight mapping.
PlaceholderValues = Annotated[dict[str, Weight], BeforeValidator(_uniform), AfterValidator(_positive_total)]


class ClientSettings(Schema):
    """conf/client/*.yaml: one endpoint, its limits and retries."""

    base_url: str | None = None
    api_key_env: EnvName = "OPENAI_API_KEY"
    mode: Literal["online", "batch"] = "online"  # online: chat requests now; batch: the Batch API (half price)
    concurrency: PositiveInt = 16
    requests_per_minute: NonNegative = 0.0  # 0 = unlimited
    tokens_per_minute: NonNegative = 0.0  # 0 = unlimited
    timeout_s: Positive = 120.0
    max_retries: NonNegativeInt = 8
    backoff_base_s: NonNegative = 1.0
    backoff_max_s: NonNegative = 60.0
    max_retry_after_s: NonNegative = 120.0  # a server's Retry-After longer than this is capped (and logged)
    retry_connect: bool = False  # connection refused / unknown host: stop at once (false) or retry (true)
    batch_window: Annotated[str, AfterValidator(_duration)] = "24h"  # Batch API completion_window
    batch_poll_s: Positive = 30.0  # seconds between batch status polls
    batch_max_requests: PositiveInt = 50000  # requests per batch file (the Batch API's own limit)


class GeneratorSettings(Schema):
    """`generator`: sampling settings shared by every generator model."""

    model: str = "gpt-4o-mini"
    temperature: NonNegative = 1.0
    top_p: NonNegative = 1.0
    max_tokens: PositiveInt = 2048
    send_seed: bool = True  # pass the per-item seed to the API (also part of the cache key)
    response_format: ResponseFormat = None  # json_object (JSON mode) | json_schema (structured outputs)
    schema_lengths: bool = True  # json_schema: minLength/maxLength bounds (OpenAI's strict mode refuses them)


class LanguageCheckSettings(Schema):
    enabled: bool = False
    max_examples: NonNegativeInt = 0  # 0 = all accepted examples


class Pricing(Schema):
    """USD per million tokens."""

    input_per_million: NonNegative = 0.0
    output_per_million: NonNegative = 0.0


class RunPricing(Pricing):
    batch_discount: NonNegative = 0.5  # Batch API price as a share of the online price


class Estimate(Schema):
    """The dry run's time estimate."""

    output_tokens_per_s: Positive = 60.0  # decode speed per request
    request_overhead_s: NonNegative = 1.0  # latency before the first token


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


class GeneratorEntry(Schema):
    """One item of `generators` (conf/mixture/*.yaml); the keys it leaves out come from `generator`,
    `client` and `pricing` (an explicit null base_url or response_format is kept: OpenAI, plain text)."""

    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    weight: Weight = 1.0
    base_url: str | None = None
    api_key_env: EnvName = "OPENAI_API_KEY"
    pricing: Pricing | None = None
    response_format: ResponseFormat = None

    def spec(self, generator: GeneratorSettings, client: ClientSettings, pricing: Pricing) -> GeneratorSpec:
        given = self.model_fields_set
        price = self.pricing.model_fields_set if self.pricing else set()
        return GeneratorSpec(
            model=self.model, weight=self.weight,
            base_url=(self.base_url if "base_url" in given else client.base_url) or None,
            api_key_env=self.api_key_env if "api_key_env" in given else client.api_key_env,
            price_input_per_m=(self.pricing if "input_per_million" in price else pricing).input_per_million,
            price_output_per_m=(self.pricing if "output_per_million" in price else pricing).output_per_million,
            response_format=self.response_format if "response_format" in given else generator.response_format,
        )


def _mixture_weights(entries: list[GeneratorEntry]) -> list[GeneratorEntry]:
    if entries and sum(g.weight for g in entries) <= 0:
        raise ValueError("weights must sum to a positive number")
    return entries


class Languages(Schema):
    """`synth.languages`: `weights` names languages; `rest` is shared evenly by every other XLM-R language."""

    weights: dict[str, Weight] = {}
    rest: Weight = 0.0

    @model_validator(mode="after")
    def _known_and_positive(self) -> Languages:
        for code in self.weights:
            if code not in XLMR_LANGUAGES:
                _fail(("weights", code), "unknown language code (expected an ISO 639-1 code from XLM-R's list, "
                                         "e.g. en, zh, de)")
        if not self.distribution().values:
            raise ValueError("language weights (weights + rest) must sum to a positive number")
        return self

    def distribution(self) -> Weighted:
        others = [c for c in XLMR_LANGUAGES if c not in self.weights]
        share = self.rest / len(others) if others else 0.0
        return Weighted.of({**self.weights, **{c: share for c in others}}, drop_zero=True)


class Brainstorm(Schema):
    """Step 1, for the brainstormed task types only."""

    calls_per_type: Annotated[PositiveInt | None, _none_for("auto")] = None  # None: follow num_examples
    tasks_per_call: PositiveInt = 20
    oversample: Annotated[float, Field(ge=1.0)] = 1.0  # extra calls to make up for duplicate definitions


class SynthGroup(Schema):
    """conf/synth/*.yaml: the task mix, the language mix and the placeholder values."""

    name: str | None = None  # the preset's label
    tasks: dict[str, Weight]  # task type -> relative weight; 0 drops a type
    languages: Languages
    placeholders: dict[str, dict[str, PlaceholderValues]] = {}
    placeholder_weights: dict[str, dict[str, dict[str, Weight]]] = {}  # task -> placeholder -> value -> weight
    examples_per_task: Annotated[float, Field(ge=0.01)] = 3.3  # the paper's 500k examples / 150k definitions
    brainstorm: Brainstorm = Brainstorm()

    @model_validator(mode="after")
    def _cross_checks(self) -> SynthGroup:
        for group in ("tasks", "placeholders"):
            for task in getattr(self, group):
                if task not in TASK_TYPES:
                    _fail((group, task), f"unknown task type (expected one of: {', '.join(TASK_TYPES)})")
        if sum(self.tasks.values()) <= 0:
            _fail(("tasks",), "weights must sum to a positive number")
        for task, names in self.placeholder_weights.items():
            for name, weights in names.items():
                values = self.placeholders.get(task, {}).get(name)
                if values is None:
                    _fail(("placeholder_weights", task, name), f"no such placeholder in synth.placeholders.{task}")
                for value in weights:
                    if value not in values:
                        _fail(("placeholder_weights", task, name, value),
                              f"not one of the placeholder's values ({', '.join(values)})")
                if sum(weights.get(v, w) for v, w in values.items()) <= 0:
                    _fail(("placeholder_weights", task, name), "weights must sum to a positive number")
        if self.tasks.get("bitext", 0) > 0 and len(self.languages.distribution().values) < 2:
            _fail(("tasks", "bitext"), "bitext needs at least two languages with weight > 0 in synth.languages "
                                       "(set synth.tasks.bitext=0 for a single-language run)")
        return self

    def settings(self) -> SynthSettings:
        placeholders = {
            task: {name: Weighted.of({**values, **self.placeholder_weights.get(task, {}).get(name, {})})
                   for name, values in names.items()}
            for task, names in self.placeholders.items()
        }
        return SynthSettings(
            tasks=Weighted.of(self.tasks, drop_zero=True), languages=self.languages.distribution(),
            placeholders=placeholders, brainstorm_calls=self.brainstorm.calls_per_type,
            tasks_per_call=self.brainstorm.tasks_per_call, examples_per_task=self.examples_per_task,
            brainstorm_oversample=self.brainstorm.oversample)


@dataclass(frozen=True)
class SynthSettings:
    tasks: Weighted
    languages: Weighted
    placeholders: dict[str, dict[str, Weighted]]
    brainstorm_calls: int | None  # per brainstorm type; None = follow num_examples
    tasks_per_call: int
    examples_per_task: float
    brainstorm_oversample: float


@dataclass(frozen=True)
class GenerateSettings:
    """What a run reads: the bound groups, the mixture resolved into GeneratorSpecs."""

    synth: SynthSettings
    out_dir: Path
    num_examples: int
    seed: int
    generator: GeneratorSettings
    generators: tuple[GeneratorSpec, ...]  # never empty: one model = a mixture of one
    client: ClientSettings
    price_input_per_m: float
    price_output_per_m: float
    batch_discount: float  # Batch API price as a share of the online price
    dry_run: bool
    dry_run_prompts: int
    progress: bool
    fsync: bool
    language_check: LanguageCheckSettings
    est_output_tokens_per_s: float  # decode speed assumed by the dry run's time estimate
    est_request_overhead_s: float  # per-request latency before the first token (time estimate)
    max_attempts: int  # attempts per item (and per brainstorm call) across all runs
    attempts_per_run: int  # new (sent) attempts per item and brainstorm call in one run
    check_models: bool  # ask the server's /v1/models whether each generator model is served

    @property
    def cache_path(self) -> Path:
        return self.out_dir / "cache.jsonl"

    @property
    def source(self) -> str:
        return self.generators[0].source

    @property
    def generator_weights(self) -> Weighted:
        return Weighted(tuple(str(i) for i in range(len(self.generators))), tuple(g.weight for g in self.generators))


def _folder(value: str) -> str:
    if not value.strip():  # an empty one would put Hydra's folder at the filesystem root
        raise ValueError("must be set to a folder path (it is empty)")
    return value


class GenerateConfig(Schema):
    """conf/generate.yaml as composed, the synth, client and mixture groups included."""

    synth: SynthGroup
    client: ClientSettings = ClientSettings()
    generator: GeneratorSettings = GeneratorSettings()
    generators: Annotated[list[GeneratorEntry], AfterValidator(_mixture_weights)] | None = None  # empty: one model
    pricing: RunPricing = RunPricing()
    language_check: LanguageCheckSettings = LanguageCheckSettings()
    estimate: Estimate = Estimate()
    run_name: str = "default"  # with output_root, only spelled into out_dir by the config
    output_root: str = "runs"
    out_dir: Annotated[str, AfterValidator(_folder)]
    num_examples: NonNegativeInt = 100
    seed: int = 0
    dry_run: bool = False
    dry_run_prompts: NonNegativeInt = 3
    progress: bool = True
    fsync: bool = False
    max_attempts: PositiveInt = 8
    attempts_per_run: PositiveInt = 4
    check_models: bool = True

    def settings(self) -> GenerateSettings:
        if self.generators:
            generators = tuple(g.spec(self.generator, self.client, self.pricing) for g in self.generators)
        else:  # no mixture: the single model of `generator` on `client`'s endpoint
            generators = (GeneratorSpec(
                model=self.generator.model, base_url=self.client.base_url, api_key_env=self.client.api_key_env,
                price_input_per_m=self.pricing.input_per_million, price_output_per_m=self.pricing.output_per_million,
                response_format=self.generator.response_format),)
        return GenerateSettings(
            synth=self.synth.settings(), out_dir=Path(self.out_dir), num_examples=self.num_examples, seed=self.seed,
            generator=self.generator, generators=generators, client=self.client,
            price_input_per_m=self.pricing.input_per_million, price_output_per_m=self.pricing.output_per_million,
            batch_discount=self.pricing.batch_discount, dry_run=self.dry_run, dry_run_prompts=self.dry_run_prompts,
            progress=self.progress, fsync=self.fsync, language_check=self.language_check,
            est_output_tokens_per_s=self.estimate.output_tokens_per_s,
            est_request_overhead_s=self.estimate.request_overhead_s,
            max_attempts=self.max_attempts, attempts_per_run=self.attempts_per_run, check_models=self.check_models)


def settings_from_config(cfg: Any) -> GenerateSettings:
    """The composed generate config (a DictConfig or a plain dict) checked and typed; a bad or unknown key
    raises ConfigError naming it."""
    return bind(GenerateConfig, cfg, "").settings()


def check_out_dir_writable(out_dir: Any) -> None:
    """Fail with `out_dir: ...` unless the folder exists and is writable, or could be created.

    Called before Hydra creates its run folder inside out_dir, and again before a run writes.
    """
    if out_dir is None or not str(out_dir).strip():
        raise SynthConfigError("out_dir: must be set to a folder path (it is empty)")
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
