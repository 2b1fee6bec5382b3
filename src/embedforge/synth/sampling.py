"""Deterministic per-item sampling: item i's task type, language(s), placeholders and seed.

Everything item i needs is drawn from a random stream seeded by (global seed, i) alone, so a resumed
run rebuilds exactly the same requests (and hits the cache) no matter which items finished before.
The generator model of a mixture is drawn from a stream of its own, so adding a mixture leaves every
other draw (and the single-model cache keys) unchanged.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from embedforge.synth.settings import GenerateSettings, Weighted, brainstorm_calls_per_type
from embedforge.synth.taxonomy import FIXED_TASK_DEFINITIONS


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (not Python's salted hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _draw(rng: random.Random, dist: Weighted) -> str:
    return rng.choices(dist.values, weights=dist.weights, k=1)[0]


@dataclass(frozen=True)
class ItemPlan:
    index: int
    task_type: str
    language: str  # ISO code; for bitext the source language
    placeholders: dict[str, str] = field(default_factory=dict)
    task_definition: str = ""
    seed: int = 0
    target_language: str | None = None  # bitext only
    generator: int = 0  # index into settings.generators

    @property
    def language_label(self) -> str:
        """The record's `language` field: `src-tgt` for bitext, the code otherwise."""
        return f"{self.language}-{self.target_language}" if self.target_language else self.language


@dataclass(frozen=True)
class BrainstormPlan:
    task_type: str
    call: int
    seed: int
    generator: int = 0


class Planner:
    def __init__(self, settings: GenerateSettings):
        self.settings = settings
        self.synth = settings.synth

    def generator_for(self, *parts: object) -> int:
        gens = self.settings.generators
        if len(gens) == 1:
            return 0
        rng = random.Random(derive_seed(self.settings.seed, "generator", *parts))
        return int(_draw(rng, self.settings.generator_weights))

    def brainstorm_plan(self, task_type: str, call: int) -> BrainstormPlan:
        seed = derive_seed(self.settings.seed, "brainstorm", task_type, call)
        return BrainstormPlan(task_type, call, seed, self.generator_for("brainstorm", task_type, call))

    def brainstorm_plans(self, task_types: list[str]) -> list[BrainstormPlan]:
        calls = brainstorm_calls_per_type(self.settings)
        return [self.brainstorm_plan(t, j) for t in task_types for j in range(calls[t])]

    def item(self, index: int, pools: dict[str, list[str]] | None = None) -> ItemPlan:
        """Plan item `index`; `pools` maps brainstormed task type -> task definitions (None: dry run)."""
        rng = random.Random(derive_seed(self.settings.seed, "item", index))
        task_type = _draw(rng, self.synth.tasks)
        language = _draw(rng, self.synth.languages)
        target = None
        if task_type == "bitext":
            langs = self.synth.languages
            others = [(v, w) for v, w in zip(langs.values, langs.weights) if v != language]
            target = rng.choices([v for v, _ in others], weights=[w for _, w in others], k=1)[0]
        spec = self.synth.placeholders.get(task_type, {})
        placeholders = {name: _draw(rng, spec[name]) for name in sorted(spec)}
        if task_type in FIXED_TASK_DEFINITIONS:
            definition = FIXED_TASK_DEFINITIONS[task_type]
        elif pools is None:
            definition = "<task definition from step 1>"
        else:
            pool = pools.get(task_type) or []
            if not pool:
                raise RuntimeError(f"no task definitions were brainstormed for task type '{task_type}'")
            definition = pool[rng.randrange(len(pool))]
        seed = derive_seed(self.settings.seed, "item-seed", index)
        return ItemPlan(index, task_type, language, placeholders, definition, seed, target, self.generator_for("item", index))
