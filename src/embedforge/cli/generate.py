"""`embedforge-generate`: synthetic data by two-step LLM prompting (see docs/synth.md).

Config errors (unknown task type, bad weights, unknown language, missing API key variable) stop the
run before any request with a one-line message naming the config key, and exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

import embedforge.paths

log = logging.getLogger("embedforge.generate")


def _quiet_http_loggers() -> None:
    # Request logs of these libraries can include headers; keep them out of generate.log.
    for name in ("openai", "httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def generate(cfg: DictConfig) -> dict:
    from embedforge.synth.client import FatalAPIError
    from embedforge.synth.estimate import dry_run
    from embedforge.synth.pipeline import BrainstormFailed, run_pipeline
    from embedforge.synth.report import format_report
    from embedforge.synth.settings import ConfigError, settings_from_dict

    _quiet_http_loggers()
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
        settings = settings_from_dict(raw)
        if settings.dry_run:
            est = dry_run(settings)
            for i, prompt in enumerate(est.pop("prompts")):
                print(f"----- prompt {i} -----\n{prompt}")
            print(json.dumps(est, indent=2))
            return est
        report = run_pipeline(settings)
    except ConfigError as exc:
        print(f"embedforge-generate: config error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (FatalAPIError, BrainstormFailed) as exc:
        print(f"embedforge-generate: stopped: {exc}", file=sys.stderr)
        sys.exit(1)
    print(format_report(report))
    print(f"examples: {settings.out_dir / 'examples.jsonl'}  report: {settings.out_dir / 'report.json'}")
    return report


@hydra.main(config_path=str(embedforge.paths.CONF_DIR), config_name="generate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    generate(cfg)


if __name__ == "__main__":
    main()
