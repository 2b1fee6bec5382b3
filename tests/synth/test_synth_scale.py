"""Diversity at scale, generator mixtures, JSON mode for local servers, and the language check."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from embedforge.data.jsonl import load_examples
from embedforge.synth.parsing import normalize_definition
from embedforge.synth.pipeline import Pipeline


def _run(settings):
    return asyncio.run(Pipeline(settings).run())


@pytest.mark.parametrize("n, vocab", [(300, 60), pytest.param(2000, 300, marks=pytest.mark.slow)])
def test_examples_report_unique_task_definitions_and_duplicates(server_factory, make_settings, n, vocab):
    # A small subject vocabulary makes brainstorm calls repeat each other, as an LLM's do.
    srv = server_factory(brainstorm_vocab=vocab, seed=13)
    s = make_settings(srv, f"num_examples={n}", "client.concurrency=64")
    report = _run(s)
    pools = json.loads((s.out_dir / "task_definitions.json").read_text())
    td = report["task_definitions"]
    assert set(td) == {"short_long", "long_short", "long_long", "short_short"}
    for t, row in td.items():
        assert row["unique"] == len(pools[t]) == len({normalize_definition(d) for d in pools[t]})
        assert row["returned"] == row["calls"] * 20 and row["duplicates_removed"] == row["returned"] - row["unique"]
    planned = -(-n * 10 // 33)  # n / 3.3, rounded up
    assert report["planned_unique_tasks"] == planned
    assert sum(r["returned"] for r in td.values()) >= planned
    assert sum(r["duplicates_removed"] for r in td.values()) > n // 40
    assert report["unique_task_definitions"] == sum(len(p) for p in pools.values())
    assert report["accepted"] + report["rejected"] + report["duplicates"] == n
    records = load_examples(s.out_dir / "examples.jsonl").examples
    texts = [(e.instruction, e.query, e.positive, tuple(e.negatives)) for e in records]
    assert len(texts) == len(set(texts)) == report["accepted"]
    assert [json.loads(l)["query"] for l in (s.out_dir / "examples.jsonl").read_text().splitlines()] == [e.query for e in records]


def test_generator_mixture_assigns_models_by_seed_and_prices_each(server_factory, make_settings):
    srv = server_factory(seed=3)
    s = make_settings(srv, "num_examples=400", "mixture=paper")
    report = _run(s)
    records = load_examples(s.out_dir / "examples.jsonl").examples
    sources = Counter(e.source for e in records)
    assert set(sources) == {"synthetic:gpt-4", "synthetic:gpt-3.5-turbo"}
    assert 0.68 < sources["synthetic:gpt-4"] / len(records) < 0.82
    served = srv.stats()["models"]
    assert set(served) == {"gpt-4", "gpt-3.5-turbo"} and sum(served.values()) == srv.stats()["requests"]
    by_gen = report["by_generator"]
    assert by_gen["gpt-4"]["accepted"] == sources["synthetic:gpt-4"]
    for model, (p_in, p_out) in {"gpt-4": (30.0, 60.0), "gpt-3.5-turbo": (0.5, 1.5)}.items():
        row = by_gen[model]
        assert row["cost_usd"] == pytest.approx((row["prompt_tokens"] * p_in + row["completion_tokens"] * p_out) / 1e6, abs=1e-6)
    assert report["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in by_gen.values()), abs=1e-5)


def test_vllm_json_mode_config_sends_response_format(server_factory, make_settings):
    srv = server_factory(seed=1)
    # The vLLM presets, pointed at the fake server instead of localhost:8000.
    s = make_settings(srv, "client=vllm", "mixture=vllm_json", "num_examples=20",
                      f"client.base_url={srv.base_url}", "client.api_key_env=EMBEDFORGE_TEST_FAKE_KEY")
    report = _run(s)
    stats = srv.stats()
    assert stats["response_formats"] == {"json_object": stats["requests"]}
    assert stats["models"] == {"Qwen/Qwen2.5-7B-Instruct": stats["requests"]}
    assert report["accepted"] == 20 and report["cost_usd"] == 0
    # In JSON mode the brainstorm replies are objects ({"tasks": [...]}) and are accepted as such.
    assert report["brainstorm"] == {"accepted": sum(r["calls"] for r in report["task_definitions"].values())}
    assert all("```" not in json.loads(l)["text"] for l in s.cache_path.read_text().splitlines())
    assert any(json.loads(l)["text"].startswith('{"tasks"') for l in s.cache_path.read_text().splitlines())


def test_language_check_counts_matches_per_language():
    pytest.importorskip("py3langid")
    from embedforge.synth.langcheck import language_agreement

    def rec(language, query, positive, task="short_long"):
        return {"instruction": "i", "query": query, "positive": positive, "negatives": [], "task_type": task,
                "language": language, "source": "s"}

    records = [
        rec("en", "q", "The committee will publish its annual report on renewable energy next month."),
        rec("de", "q", "Der Ausschuss veröffentlicht nächsten Monat seinen Jahresbericht über erneuerbare Energien."),
        rec("fr", "q", "Le comité publiera le mois prochain son rapport annuel sur les énergies renouvelables."),
        rec("fr", "q", "The committee will publish its annual report on renewable energy next month."),  # wrong
        rec("de-fr", "Der Ausschuss veröffentlicht nächsten Monat seinen Jahresbericht.",
            "Le comité publiera le mois prochain son rapport annuel.", task="bitext"),
        rec("yi", "q", "text the detector cannot judge"),  # Yiddish: not in the detector's languages
    ]
    out = language_agreement(records)
    assert (out["checked"], out["matched"], out["unsupported"]) == (5, 4, 1)
    assert out["by_language"]["fr"] == {"checked": 2, "matched": 1, "unsupported": 0, "share": 0.5}
    assert out["by_language"]["de-fr"]["matched"] == 1 and out["share"] == 0.8


def test_language_check_in_a_run_is_reported(server_factory, make_settings):
    pytest.importorskip("py3langid")
    srv = server_factory()
    s = make_settings(srv, "num_examples=30", "language_check.enabled=true",
                      "synth.tasks={short_long: 0, long_short: 0, bitext: 0, long_long: 0, short_short: 0}", "synth/languages=en")
    report = _run(s)
    lc = report["language_check"]
    # The fake server writes English whatever is asked: every English example matches.
    assert lc["checked"] == report["accepted"] == 30 and lc["by_language"]["en"]["share"] == 1.0
