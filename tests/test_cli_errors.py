"""The error contract, end to end: every console script, run as a subprocess on a bad config and on a bad
input, exits with 2 and prints one line `embedforge-<tool>: <message naming the key or file:line>` last on
stderr, with no traceback; HYDRA_FULL_ERROR=1 brings the traceback back. Each failure happens before any
model is loaded. One case per CLI runs by default; the second case per CLI is marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BAD_LINE = {"query": "q", "positive": "p", "negatives": "not a list", "instruction": "i", "task_type": "short_long",
            "language": "en", "source": "t"}
GOOD_LINE = {**BAD_LINE, "negatives": ["n"]}


def _jsonl(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _bad_data(tmp: Path) -> Path:
    return _jsonl(tmp / "bad.jsonl", GOOD_LINE, BAD_LINE)  # line 2 is bad


def _bad_record(tmp: Path) -> Path:
    run = tmp / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run_record.json").write_text('{"kind": "train",\n  "run_id": oops}\n', encoding="utf-8")
    return run


def _sweep(tmp: Path, text: str) -> Path:
    path = tmp / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# (tool, module, argv builder(tmp) -> list[str], text the last line must contain (may use {tmp}))
CASES = {
    "train-config": ("train", "train", lambda t: ["loss.temperature=0"], "loss.temperature"),
    "train-input": ("train", "train", lambda t: [f"data.train_files=[{_bad_data(t)}]"], "bad.jsonl:2"),
    "evaluate-config": ("evaluate", "evaluate", lambda t: ["eval.mode=sometimes"], "eval.mode"),
    "evaluate-input": ("evaluate", "evaluate", lambda t: [f"eval.data_dir={t}/none"],
                       "eval.data_dir: folder not found"),
    "generate-config": ("generate", "generate", lambda t: ["client.api_key_env=EMBEDFORGE_UNSET_KEY", f"out_dir={t}/o"],
                        "client.api_key_env"),
    "generate-input": ("generate", "generate", lambda t: [f"out_dir={_jsonl(t / 'a_file')}"], "out_dir"),
    "mine-config": ("mine", "mine", lambda t: [f"input={_bad_data(t)}", f"out={t}/o.jsonl", "negatives.rank_start=0"],
                    "negatives.rank_start"),
    "mine-input": ("mine", "mine", lambda t: [f"input={_bad_data(t)}", f"out={t}/o.jsonl"], "bad.jsonl:2"),
    "export-config": ("export", "export", lambda t: [], "checkpoint"),
    "export-input": ("export", "export", lambda t: [f"checkpoint={t}/no_such_encoder"], "no_such_encoder"),
    "report-config": ("report", "report", lambda t: ["runs=[{nope: 1}]"], "runs.0"),
    "report-input": ("report", "report", lambda t: [f"runs=[{_bad_record(t)}]"], "run_record.json:2"),
    "decontam-config": ("decontam", "decontam", lambda t: [f"train=[{_bad_data(t)}]", "ngram.n=0"], "ngram.n"),
    "decontam-input": ("decontam", "decontam", lambda t: [f"train=[{t}/nothing*.jsonl]"], "train"),
    "plan-config": ("plan", "plan", lambda t: ["experiment=paper/synthetic_msmarco", "gpu=Z80"], "gpu"),
    "plan-input": ("plan", "plan", lambda t: [f"model.pretrained={t}/no_such_model"], "model.pretrained"),
    "sweep-offline-config": ("sweep-offline", "sweep_offline",
                             lambda t: [str(_sweep(t, "program: x\nmethod: grid\nparameters: {lr: {values: [1, 2]}}\n")), "--validate-only"],
                             "metric.name"),
    "sweep-offline-input": ("sweep-offline", "sweep_offline", lambda t: [f"{t}/missing.yaml", "--validate-only"],
                            "missing.yaml"),
    # the typed settings at each CLI: an unknown key and a bad type or range, refused by name (slow: subprocesses)
    "evaluate-unknown-key": ("evaluate", "evaluate", lambda t: ["+eval.taskz=[STS12]"], "eval.taskz' is unknown"),
    "evaluate-bad-type": ("evaluate", "evaluate", lambda t: ["eval.batch_size=many"], "eval.batch_size"),
    "mine-unknown-key": ("mine", "mine", lambda t: [f"input={_bad_data(t)}", f"out={t}/o.jsonl", "+negatives.rank_begin=3"],
                         "negatives.rank_begin' is unknown"),
    "mine-bad-type": ("mine", "mine", lambda t: [f"input={_bad_data(t)}", f"out={t}/o.jsonl", "encode.batch_size=0"],
                      "encode.batch_size"),
    "export-unknown-key": ("export", "export", lambda t: [f"checkpoint={t}/enc", "+prompts.modes=none"],
                           "prompts.modes' is unknown"),
    "export-bad-type": ("export", "export", lambda t: [f"checkpoint={t}/enc", "dtype=float8"], "dtype"),
    "report-unknown-key": ("report", "report", lambda t: ["+wandb.entity=me"], "wandb.entity' is unknown"),
    "report-bad-type": ("report", "report", lambda t: ["on_error=maybe"], "on_error"),
    "decontam-unknown-key": ("decontam", "decontam", lambda t: [f"train=[{_bad_data(t)}]", f"eval.data_dir={t}",
                                                                 "+eval.task=[SciFact]"], "eval.task' is unknown"),
    "decontam-bad-type": ("decontam", "decontam", lambda t: [f"train=[{_bad_data(t)}]", f"eval.data_dir={t}",
                                                              "chunk_size=lots"], "chunk_size"),
}
DEFAULT = {"train-input", "evaluate-config", "generate-config", "mine-input", "export-config", "report-input",
           "decontam-config", "sweep-offline-config", "plan-config"}


def _run(module: str, argv: list[str], tmp: Path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "EMBEDFORGE_UNSET_KEY")}
    environ.update({"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO / "src"), **env})
    hydra_dir = [] if module in ("sweep_offline", "plan") else [f"hydra.run.dir={tmp}/hydra"]  # no Hydra run
    return subprocess.run([sys.executable, "-m", f"embedforge.cli.{module}", *argv, *hydra_dir], cwd=tmp, env=environ,
                          capture_output=True, text=True, timeout=300)


def _params():
    for name, case in CASES.items():
        yield pytest.param(*case, id=name, marks=() if name in DEFAULT else pytest.mark.slow)


@pytest.mark.parametrize("tool, module, argv, expected", _params())
def test_cli_error_is_one_line_exit_2(tmp_path, tool, module, argv, expected):
    done = _run(module, argv(tmp_path), tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[-1].startswith(f"embedforge-{tool}: "), lines[-3:]
    assert expected in lines[-1], lines[-1]
    assert sum(line.startswith(f"embedforge-{tool}: ") for line in lines) == 1, lines  # said once


def test_every_console_script_is_covered():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    tools = {name.removeprefix("embedforge-") for name in scripts}
    assert tools == {case[0] for case in CASES.values()}
    assert tools == {CASES[name][0] for name in DEFAULT}


def test_hydra_full_error_brings_the_traceback_back(tmp_path):
    done = _run("evaluate", ["eval.mode=sometimes"], tmp_path, HYDRA_FULL_ERROR="1")
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError: config key 'eval.mode'" in done.stderr


def test_verbose_brings_the_traceback_back_without_hydra(tmp_path):
    done = _run("sweep_offline", [f"{tmp_path}/missing.yaml", "--validate-only", "--verbose"], tmp_path)
    assert done.returncode != 0 and "Traceback" in done.stderr and "SweepFileError" in done.stderr


def test_an_unknown_override_stays_hydras_own_short_message(tmp_path):
    done = _run("evaluate", ["no_such_key=1"], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no_such_key" in done.stderr and "embedforge-evaluate:" not in done.stderr
