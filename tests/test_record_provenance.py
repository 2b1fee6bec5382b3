"""Every run record committed under experiments/*/records/ was made by experiments/run_grid.sh from a
clean tree: its argv is the command the script prints (DRY_RUN=1) for that grid, row and seed, its run
id is the one that command gives, and git.dirty is false. Records made before the script recorded its
runs folder are listed, with the reason, in experiments/legacy_records.txt: that list may only shrink."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "experiments" / "run_grid.sh"
LEGACY = REPO / "experiments" / "legacy_records.txt"
STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"


def _legacy() -> set[str]:
    lines = LEGACY.read_text(encoding="utf-8").splitlines()
    return {line.split()[0] for line in lines if line.strip() and not line.startswith("#")}


def _records() -> list[Path]:
    return sorted(REPO.glob("experiments/*/records/**/run_record.json"))


def _where(path: Path) -> tuple[str, str, int | None, str]:
    """(grid, row, seed or None, kind folder) from records/<row>/[seed<s>/]<train|evaluate>/run_record.json."""
    rel = path.relative_to(REPO / "experiments").parts
    grid, row, kind = rel[0], rel[2], rel[-2]
    seed = int(rel[3][4:]) if len(rel) == 6 and rel[3].startswith("seed") else None
    return grid, row, seed, kind


def _dry_run(grid: str, row: str, seed: int | None, runs: str, env_extra: dict, tmp_path: Path) -> list[list[str]]:
    env = {**os.environ, "DRY_RUN": "1", "RUNS": runs, "RECORDS": str(tmp_path / "records"),
           "EMBEDFORGE_BIN": ".venv/bin", **env_extra}
    if seed is not None:
        env["SEEDS"] = str(seed)
    done = subprocess.run(["bash", str(GRID), grid, row], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines() if "embedforge-" in line.split(" ")[0]]


def _option(argv: list[str], key: str) -> str | None:
    return next((a.split("=", 1)[1] for a in argv if a.startswith(key + "=")), None)


def test_the_legacy_list_names_existing_records_only():
    for name in _legacy():
        assert (REPO / name).is_file(), f"{LEGACY.name}: {name} is not a committed record (remove the line)"


@pytest.mark.parametrize("path", [p for p in _records() if str(p.relative_to(REPO)) not in _legacy()],
                         ids=lambda p: str(p.relative_to(REPO / "experiments")))
def test_a_record_is_the_command_run_grid_prints(path, tmp_path):
    record = json.loads(path.read_text(encoding="utf-8"))
    grid, row, seed, kind = _where(path)
    argv = record["argv"]
    assert record["git"]["dirty"] is False, "made from a tree with uncommitted changes"
    assert Path(argv[0]).name == f"embedforge-{'train' if kind == 'train' else 'evaluate'}"
    if kind == "train":
        runs = _option(argv, "paths.output_root")
        assert runs is not None and record["config"]["seed"] == (seed if seed is not None else record["config"]["seed"])
        printed = _dry_run(grid, row, seed, runs.removesuffix(f"/seed{seed}") if seed is not None else runs, {}, tmp_path)
        train = [cmd for cmd in printed if Path(cmd[0]).name == "embedforge-train"]
        assert train and train[0][1:] == argv[1:], (train, argv)
        assert re.fullmatch(rf"{grid}_{row}/{STAMP}", record["run_id"]), record["run_id"]
        return
    # an evaluation: the grid's tasks and length, the runs folder, a fresh record folder of that row
    record_dir = _option(argv, "record_dir")
    runs = str(Path(_option(argv, "output_dir")).parent.parent)
    assert re.fullmatch(rf".*/evaluate_{grid}_{row}\.\w{{4}}", record_dir or ""), record_dir
    assert _option(argv, "hydra.run.dir") == f"{record_dir}/hydra"
    # the settings come from the grid's committed run.sh, not from the record
    script = (REPO / "experiments" / grid / "run.sh").read_text(encoding="utf-8")
    env = {"TASKS": _option(argv, "eval.tasks") or "", "EVAL_LENGTH": _option(argv, "encoder_max_length") or ""}
    assert not env["TASKS"] or f"TASKS='{env['TASKS']}'" in script, env["TASKS"]
    assert not env["EVAL_LENGTH"] or f"EVAL_LENGTH={env['EVAL_LENGTH']}" in script, env["EVAL_LENGTH"]
    # more evaluation arguments: one of the script's EVAL_ARGS='...' values, all of whose words the record has
    given = [v for v in re.findall(r"EVAL_ARGS='([^']*)'", script) if v and all(a in argv for a in v.split())]
    env["EVAL_ARGS"] = max(given, key=len, default="")
    if row.startswith("base"):
        env["BASE_ARGS"] = " ".join(a for a in argv[1:] if not a.startswith(
            ("eval.tasks=", "encoder_max_length=", "output_dir=", "record_dir=", "hydra.run.dir="))
            and a not in env["EVAL_ARGS"].split())
        assert env["BASE_ARGS"] in re.findall(r"BASE_ARGS='([^']*)'", script), env["BASE_ARGS"]
    printed = _dry_run(grid, row, seed, runs, env, tmp_path)
    evaluate = [cmd for cmd in printed if Path(cmd[0]).name == "embedforge-evaluate"]
    assert evaluate, printed

    def same(expected: list[str]) -> list[str]:  # the parts only the real run knows: folder suffix, encoder
        out = []
        for arg in expected:
            arg = re.sub(r"\.DRYRUN", record_dir[-5:] if record_dir else "", arg)
            if arg.startswith("checkpoint="):
                train = json.loads((path.parent.parent / "train" / "run_record.json").read_text(encoding="utf-8"))
                arg = f"checkpoint={train['encoder_dir']}"
                assert record["evaluated"] == train["run_id"]
            out.append(arg)
        return out

    assert same(evaluate[0])[1:] == argv[1:], (evaluate[0], argv)
