"""`embedforge-generate`: synthetic data by two-step LLM prompting (see docs/synth.md).

The composed config is bound once into typed settings (embedforge.synth.settings) and only those go
inward. Config errors (an unknown or mistyped key, unknown task type, bad weights, unknown language, an
`out_dir` that cannot be written, missing API key variable) stop the run before any request with a
one-line message naming the config key, and exit code 2; so does an endpoint that refuses every request
(the line says which outputs exist). The config is also bound before Hydra starts, because Hydra creates
its run folder inside `out_dir` before our code runs: a bad `out_dir` must be reported as such, not as a
traceback from inside Hydra."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

import embedforge.paths
from embedforge.cli.errors import one_line_errors
from embedforge.errors import ServiceError

if TYPE_CHECKING:
    from embedforge.synth.settings import GenerateSettings

log = logging.getLogger("embedforge.generate")


def precheck(argv: list[str]) -> None:
    """Compose the config as Hydra will and bind it (out_dir included) before Hydra writes.

    Command lines this cannot mirror (multirun sweeps, another config dir or name, --help/--cfg)
    are left to Hydra; the config is bound again inside the job.
    """
    from hydra import compose, initialize_config_dir

    from embedforge.synth.settings import check_out_dir_writable, settings_from_config

    if any(a.startswith("-") for a in argv):
        return
    try:
        with initialize_config_dir(str(embedforge.paths.CONF_DIR), version_base="1.3"):
            cfg = compose("generate", overrides=list(argv))
    except Exception:  # noqa: BLE001 - Hydra will report its own override/composition errors
        return
    check_out_dir_writable(settings_from_config(cfg).out_dir)


def _log_hint() -> str:
    """'; reject reasons: <hydra run dir>/generate.log' when that log file exists."""
    try:
        from hydra.core.hydra_config import HydraConfig

        path = os.path.join(HydraConfig.get().runtime.output_dir, "generate.log")
    except Exception:  # noqa: BLE001 - not under Hydra (tests call generate() directly)
        return ""
    return f"; reject reasons: {path}" if os.path.exists(path) else ""


def generate(settings: GenerateSettings) -> dict:
    from embedforge.synth.client import FatalAPIError
    from embedforge.synth.estimate import dry_run, format_estimate
    from embedforge.synth.logguard import guard_logging
    from embedforge.synth.pipeline import BrainstormFailed, run_pipeline
    from embedforge.synth.report import format_report

    guard_logging(settings)
    try:
        if settings.dry_run:
            est = dry_run(settings)
            for i, prompt in enumerate(est.pop("prompts")):
                print(f"----- prompt {i} -----\n{prompt}")
            print(json.dumps(est, indent=2))
            print(format_estimate(est))
            return est
        report = run_pipeline(settings)
    except (FatalAPIError, BrainstormFailed) as exc:  # say which outputs exist and where the reject reasons are
        out = settings.out_dir
        kept = "previous outputs in {} are unchanged" if (out / "report.json").exists() else "no complete outputs in {} yet"
        raise ServiceError(f"stopped: {exc}{_log_hint()} ({kept.format(out)})") from exc
    print(format_report(report))
    print(f"examples: {settings.out_dir / 'examples.jsonl'}  report: {settings.out_dir / 'report.json'}")
    return report


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="generate", version_base="1.3")
@one_line_errors("generate")
def _hydra_main(cfg: DictConfig) -> None:
    from embedforge.synth.settings import settings_from_config

    generate(settings_from_config(cfg))  # typed from here on: nothing inward sees the DictConfig


@one_line_errors("generate")
def main() -> None:
    precheck(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
