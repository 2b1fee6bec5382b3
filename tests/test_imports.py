"""scripts/check_imports.py: our package has no import circles and no upward arrows, and the checker finds
both in a small package made to have them (lazy imports included)."""

from __future__ import annotations

import importlib.util
import io
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "check_imports.py"


@pytest.fixture(scope="module")
def checker():
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def _check(checker, root: Path, floors: dict[str, int]) -> tuple[int, str]:
    out = io.StringIO()
    return checker.check(root, floors, out=out), out.getvalue()


def test_embedforge_has_no_circles_and_no_upward_arrows():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "circles: 0" in done.stdout and "room circles: 0" in done.stdout and "upward arrows: 0" in done.stdout
    assert "largest module: " in done.stdout


def test_every_room_has_a_floor_and_the_docs_show_the_same_table(checker):
    rooms = {p.stem if p.is_file() else p.name for p in (REPO / "src" / "embedforge").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert rooms == set(checker.FLOORS)
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8").split("## Import floors")[1]
    documented = {room: int(row[0]) for row in re.findall(r"^\| (\d+) \| (.*) \|$", doc, re.M)
                  for room in re.findall(r"`(\w+)`", row[1].split("(")[0])}
    assert documented == checker.FLOORS


def test_a_lazy_circle_is_found_and_named(checker, tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from pkg.low import b  # lazy\n    return b\n",
        "low/b.py": "from pkg.low.c import g\n",
        "low/c.py": "import pkg.low.a\n",
        "low/d.py": "from pkg.low import a\n",  # outside the circle
    })
    code, text = _check(checker, root, {"low": 0})
    assert code == 1
    assert "circles: 1\n  low/a <-> low/b <-> low/c\n" in text  # low/d imports the circle but is not in it
    assert "low/a:2 imports low/b" in text and "low/c:1 imports low/a" in text


def test_an_upward_arrow_and_a_room_circle_are_found(checker, tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "base.py": "from pkg.top.run import go\n",  # floor 0 imports floor 2
        "top/__init__.py": "",
        "top/run.py": "from . import helper\n",
        "top/helper.py": "",
        "mid_a/__init__.py": "from pkg.mid_b import x\n",
        "mid_b/__init__.py": "def x():\n    import pkg.mid_a.inner\n",
        "mid_a/inner.py": "",
    })
    code, text = _check(checker, root, {"base": 0, "mid_a": 1, "mid_b": 1, "top": 2})
    assert code == 1
    assert "circles: 0" in text  # modules: no circle
    assert "room circles: 1" in text and "mid_a <-> mid_b" in text
    assert "upward arrows: 1" in text and "base:1 (base, floor 0) imports top/run (top, floor 2)" in text


def test_type_checking_imports_do_not_count_and_unknown_rooms_fail(checker, tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b.py": "import pkg.a\n",
        "c.py": "",
    })
    code, text = _check(checker, root, {"a": 0, "b": 1, "c": 0})
    assert code == 0 and "circles: 0" in text and "upward arrows: 0" in text
    code, text = _check(checker, root, {"a": 0, "b": 1})
    assert code == 1 and "rooms without a floor (add them to FLOORS): c" in text


def test_strongly_connected_matches_a_reachability_reference(checker):
    rng = random.Random(0)
    for _ in range(50):
        nodes = [f"m{i}" for i in range(rng.randint(1, 12))]
        edges = {n: {m for m in nodes if m != n and rng.random() < 0.15} for n in nodes}

        def reach(start):
            seen, todo = set(), [start]
            while todo:
                for nxt in edges[todo.pop()]:
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            return seen

        reachable = {n: reach(n) for n in nodes}
        expected = {frozenset([n] + [m for m in nodes if m in reachable[n] and n in reachable[m]]) for n in nodes}
        expected = sorted(sorted(c) for c in expected if len(c) > 1)
        assert checker.strongly_connected(edges) == expected
