"""Fixtures for the evaluation tests; the task writers live in eval_task_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import eval_task_fixtures
from eval_task_fixtures import make_bitext, make_classification, make_pairs, make_retrieval, make_sts


@pytest.fixture(scope="session")
def tasks_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_tasks")
    for make in (make_sts, make_retrieval, make_classification, make_pairs, make_bitext):
        make(root)
    return root


@pytest.fixture(scope="session")
def minilm():
    from embedforge.model.builder import encoder_from_pretrained

    return encoder_from_pretrained("embedded:all-MiniLM-L6-v2", pooling="mean", max_length=256)


@pytest.fixture(scope="session")
def fx():
    """The rows and `make_*` writers (tests/ is not a package, so tests reach them through this fixture)."""
    return eval_task_fixtures
