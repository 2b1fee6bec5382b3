"""The typed config boundary of `embedforge-generate`: every key of the composed config is known and typed;
an unknown or bad one is refused with one line naming its full key, before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from embedforge.errors import ConfigError
from embedforge.synth.settings import settings_from_config

from conftest import compose_cfg, compose_raw


def _refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as exc:
        settings_from_config(compose_cfg(["out_dir=/tmp/unused", *overrides]))
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "override, key",
    [
        ("+synth.languages_typo=1", "synth.languages_typo"),
        ("+synth.brainstorm.callz=1", "synth.brainstorm.callz"),
        ("+synth.languages.wieghts={en: 1}", "synth.languages.wieghts"),
        ("+client.concurency=3", "client.concurency"),
        ("+generator.temprature=0.5", "generator.temprature"),
        ("+pricing.batch_discont=0.4", "pricing.batch_discont"),
        ("+language_check.enable=true", "language_check.enable"),
        ("+estimate.output_tokens=10", "estimate.output_tokens"),
        ("+num_exmaples=5", "num_exmaples"),
        ("generators=[{model: m, wieght: 1}]", "generators.0.wieght"),
        ("generators=[{model: m, pricing: {input_per_milion: 1}}]", "generators.0.pricing.input_per_milion"),
    ],
)
def test_an_unknown_key_anywhere_is_refused_by_its_full_name(override, key):
    assert _refused(override).startswith(f"config key '{key}' is unknown (known: ")


@pytest.mark.parametrize(
    "override, key",
    [
        ("num_examples=-1", "num_examples"),
        ("seed=abc", "seed"),
        ("dry_run=maybe", "dry_run"),
        ("progress=1", "progress"),
        ("max_attempts=0", "max_attempts"),
        ("attempts_per_run=0", "attempts_per_run"),
        ("client.timeout_s=0", "client.timeout_s"),
        ("client.concurrency=1.5", "client.concurrency"),
        ("client.max_retries=-1", "client.max_retries"),
        ("client.batch_poll_s=0", "client.batch_poll_s"),
        ("generator.max_tokens=0", "generator.max_tokens"),
        ("generator.temperature=hot", "generator.temperature"),
        ("generator.schema_lengths=yes", "generator.schema_lengths"),
        ("language_check.max_examples=-1", "language_check.max_examples"),
        ("estimate.output_tokens_per_s=0", "estimate.output_tokens_per_s"),
        ("pricing.batch_discount=-1", "pricing.batch_discount"),
        ("synth.brainstorm.oversample=0.5", "synth.brainstorm.oversample"),
        ("synth.brainstorm.tasks_per_call=0", "synth.brainstorm.tasks_per_call"),
        ("+synth.placeholder_weights.sts.unit={sentence: -1}", "synth.placeholder_weights.sts.unit.sentence"),
        ("synth.languages.rest=-0.1", "synth.languages.rest"),
    ],
)
def test_a_bad_type_or_range_is_refused_naming_the_key(override, key):
    assert _refused(override).startswith(f"config key '{key}': ")


def test_a_key_put_where_its_name_belongs_is_not_echoed():
    secret = "sk-proj-NOT-A-NAME-1234"
    message = _refused(f"client.api_key_env={secret}")
    assert message.startswith("config key 'client.api_key_env': ") and secret not in message


def test_dictconfig_and_plain_dict_bind_alike():
    overrides = ["out_dir=/tmp/unused", "mixture=paper", "synth=en", "client=vllm"]
    assert settings_from_config(compose_cfg(overrides)) == settings_from_config(compose_raw(overrides))


def test_the_mixture_fills_what_an_entry_leaves_out():
    s = settings_from_config(compose_cfg([
        "out_dir=/tmp/unused", "client.base_url=http://h/v1", "client.api_key_env=K", "pricing.input_per_million=7",
        "generators=[{model: a}, {model: b, base_url: null, api_key_env: L, pricing: {output_per_million: 2}}]"]))
    a, b = s.generators
    assert (a.base_url, a.api_key_env, a.price_input_per_m) == ("http://h/v1", "K", 7.0)
    assert (b.base_url, b.api_key_env, b.price_input_per_m, b.price_output_per_m) == (None, "L", 7.0, 2.0)


def test_the_cli_refuses_an_unknown_key_before_writing(tmp_path, cli_env):
    out = tmp_path / "never"
    done = subprocess.run([sys.executable, "-m", "embedforge.cli.generate", f"out_dir={out}", "+synth.languages_typo=1"],
                          env=cli_env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert lines[-1].startswith("embedforge-generate: config key 'synth.languages_typo' is unknown"), lines[-3:]
    assert "Traceback" not in done.stderr and not out.exists()
