"""embedforge-sweep-offline: run a W&B sweep file on this machine, without the W&B server.

`wandb sweep` sends the file to the server, which checks and stores it, and `wandb agent` asks the
server for each trial's parameters; neither works offline. This does both jobs locally with the
search engine the W&B server runs, the open-source `sweeps` package:
- the file is checked against the sweep schema;
- each trial's parameters come from `sweeps.next_run`, given the finished trials and their metric
  (bayes, random or grid, as the file says);
- the file's `command` runs with WANDB_MODE=offline (`wandb sync` uploads the runs later);
- the metric is read back from the trial's run record.

    embedforge-sweep-offline sweep.yaml --validate-only
    embedforge-sweep-offline sweep.yaml --trials 4
    embedforge-sweep-offline sweep_mteb.yaml --trials 2 -- trainer.max_steps=8     (added to every trial)

The program must be a Hydra entry point of this project (embedforge-train): each trial gets
`hydra.run.dir=<out>/trial_<n>`, which is where its run record is read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from embedforge.cli.errors import EXIT_CODE, report
from embedforge.errors import ConfigError, EmbedforgeError
from embedforge.run_record import RECORD_FILE, read_run_record, record_metric


class SweepFileError(ConfigError):
    """The sweep file cannot be run; the message names the file and what is wrong."""


def load_sweep(path: Path) -> dict:
    """The sweep file, checked against W&B's sweep schema."""
    import sweeps

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SweepFileError(f"{path}: cannot read the sweep file ({exc})") from None
    if not isinstance(config, dict):
        raise SweepFileError(f"{path}: a sweep file is a mapping (program, method, metric, parameters)")
    problems = sweeps.schema_violations_from_proposed_config(config)
    if problems:
        raise SweepFileError(f"{path}: not a valid sweep: " + "; ".join(problems))
    if not (config.get("metric") or {}).get("name"):
        raise SweepFileError(f"{path}: metric.name is missing (the value each trial is judged by)")
    return config


def trial_command(config: dict, params: dict, extra: list[str], path: Path) -> list[str]:
    """The file's `command` with W&B's macros filled in (its default: env, interpreter, program, args)."""
    template = config.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    program = str(config.get("program") or "")
    found = shutil.which(program, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    args = [f"{key}={value}" for key, value in params.items()]
    fills = {"${program}": [found or program], "${args_no_hyphens}": args + extra,
             "${args}": [f"--{a}" for a in args] + extra, "${env}": [], "${interpreter}": []}
    command = []
    for part in template:
        part = str(part)
        if part in fills:
            command.extend(fills[part])
        elif part.startswith("${"):
            raise SweepFileError(f"{path}: command: {part} is not supported offline "
                                 f"(supported: {', '.join(sorted(fills))})")
        else:
            command.append(part)
    if "${args}" not in template and "${args_no_hyphens}" not in template:
        command.extend(args + extra)
    return command


def _plain(value):
    """numpy scalars (bayes, log-uniform draws) as plain numbers, for the command line and the JSON."""
    return value.item() if hasattr(value, "item") else value


def run_sweep(path: Path, trials: int, extra: list[str], out_dir: Path) -> list[dict]:
    """Run up to `trials` trials one after another; return one summary per trial (also in sweep_results.json)."""
    import sweeps

    config = load_sweep(path)
    metric = config["metric"]["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    # offline, unless W&B is switched off altogether
    env = {**os.environ, "WANDB_MODE": "disabled" if os.environ.get("WANDB_MODE") == "disabled" else "offline"}
    finished, results = [], []
    for n in range(trials):
        suggestion = sweeps.next_run(config, finished)
        if suggestion is None:  # a grid is exhausted
            break
        params = {key: _plain(spec["value"]) for key, spec in suggestion.config.items()}
        trial_dir = out_dir / f"trial_{n}"
        command = trial_command(config, params, [*extra, f"hydra.run.dir={trial_dir}"], path)
        print(f"[sweep] trial {n}: {' '.join(f'{k}={v}' for k, v in params.items())}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(command, env=env).returncode
        record_file = trial_dir / RECORD_FILE
        value = record_metric(read_run_record(record_file), metric) if code == 0 and record_file.is_file() else None
        state = sweeps.RunState.finished if value is not None else sweeps.RunState.failed
        finished.append(sweeps.SweepRun(name=f"trial_{n}", state=state, config=suggestion.config,
                                        summary_metrics={metric: value} if value is not None else {}))
        results.append({"trial": n, "params": params, "value": value, "returncode": code,
                        "seconds": round(time.perf_counter() - started, 1), "run_dir": str(trial_dir)})
        (out_dir / "sweep_results.json").write_text(json.dumps(
            {"sweep_file": str(path), "metric": config["metric"], "trials": results}, indent=2))
        print(f"[sweep] trial {n}: {metric} = {value} (exit {code})", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="embedforge-sweep-offline", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_file", type=Path)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--validate-only", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/sweep_offline/<file>/<time>")
    parser.add_argument("--verbose", action="store_true", help="a traceback instead of one line for an expected error")
    args = parser.parse_args(argv)
    try:
        if args.validate_only:
            load_sweep(args.sweep_file)
            print(f"{args.sweep_file}: a valid sweep")
            return 0
        out = args.out or Path("runs/sweep_offline") / args.sweep_file.stem / time.strftime("%Y-%m-%d_%H-%M-%S")
        results = run_sweep(args.sweep_file, args.trials, extra, out)
    except EmbedforgeError as exc:
        if args.verbose:
            raise
        report("sweep-offline", exc)
        return EXIT_CODE
    done = [r for r in results if r["value"] is not None]
    print(f"[sweep] {len(done)} of {len(results)} trials finished; results: {out / 'sweep_results.json'}")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
