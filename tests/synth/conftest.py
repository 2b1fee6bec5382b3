"""Fixtures for synth tests: a fake OpenAI server per test and settings composed from the real configs."""

from __future__ import annotations

import os
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import embedforge.paths
from embedforge.testing import FakeServer, FaultConfig
from embedforge.synth.settings import GenerateSettings, settings_from_config

FAKE_KEY_ENV = "EMBEDFORGE_TEST_FAKE_KEY"
FAKE_KEY = "sk-embedforge-SECRET-7f3a9c1d"

# Fast client settings for a local server: short timeouts and backoff, no rate limit.
FAST_CLIENT = [
    "client.timeout_s=0.5",
    "client.backoff_base_s=0.01",
    "client.backoff_max_s=0.1",
    "client.max_retries=10",
    "client.requests_per_minute=0",
    "client.tokens_per_minute=0",
    "progress=false",
]


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(str(embedforge.paths.CONF_DIR), version_base="1.3"):
        return compose("generate", overrides=overrides)


def compose_raw(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose_cfg(overrides), resolve=True)


@pytest.fixture
def fake_key(monkeypatch) -> str:
    monkeypatch.setenv(FAKE_KEY_ENV, FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def server_factory() -> Callable[..., FakeServer]:
    started: list[FakeServer] = []

    def make(**kwargs) -> FakeServer:
        srv = FakeServer(FaultConfig(**kwargs)).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def make_settings(tmp_path, fake_key) -> Callable[..., GenerateSettings]:
    """Settings for a run against `server` writing under tmp_path; extra Hydra overrides allowed."""

    def make(server: FakeServer, *overrides: str, out: str = "out") -> GenerateSettings:
        base = [
            f"client.base_url={server.base_url}",
            f"client.api_key_env={FAKE_KEY_ENV}",
            f"out_dir={tmp_path / out}",
            *FAST_CLIENT,
        ]
        return settings_from_config(compose_cfg(base + list(overrides)))

    return make


@pytest.fixture(name="compose_raw")
def compose_raw_fixture() -> Callable[[list[str]], dict]:
    """Compose conf/generate.yaml with overrides and resolve it to a plain dict."""
    return compose_raw


@pytest.fixture
def cli_env(fake_key) -> dict:
    """Environment for `python -m embedforge.cli.generate` subprocesses (fake key set)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["FAKE_KEY_ENV_NAME"] = FAKE_KEY_ENV
    return env


@pytest.fixture
def fake_key_env() -> str:
    return FAKE_KEY_ENV


@pytest.fixture
def fast_client() -> list[str]:
    return list(FAST_CLIENT)
