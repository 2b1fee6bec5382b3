"""`embedforge-plan <embedforge-train overrides> [gpu=H100] [plan.mfu=0.4] [plan.num_examples=N]`:
the run's parameters, global batch, memory per GPU, FLOPs and hours, without training.

Exit status: 0 it fits; 1 it will not fit on the card (the fix is printed); 2 the config is refused
(one line: a bad override, or a global batch that differs from data.global_batch_size)."""

from __future__ import annotations

import sys

from embedforge.cli.errors import one_line_errors
from embedforge.errors import ConfigError

PLAN_KEYS = {"gpu": "gpu", "plan.gpu": "gpu", "plan.mfu": "mfu", "plan.num_examples": "num_examples"}


def split_args(argv: list[str]) -> tuple[list[str], dict]:
    """Hydra overrides for conf/train.yaml, and the planner's own keys."""
    overrides, options = [], {}
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key in PLAN_KEYS and value:
            options[PLAN_KEYS[key]] = value
        else:
            overrides.append(arg)
    return overrides, options


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from embedforge.cli.nested_glob import expand_nested_globs
    from embedforge.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=expand_nested_globs(overrides, CONF_DIR))


@one_line_errors("plan")
def main(argv: list[str] | None = None) -> int:
    import logging

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    logging.disable(logging.WARNING)
    overrides, options = split_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = compose(overrides)  # composed here, not under @hydra.main: its errors are ours to print
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    from embedforge.plan.plan import make_plan, render

    try:
        mfu = float(options.get("mfu", 0.4))
        num_examples = int(options["num_examples"]) if "num_examples" in options else None
    except ValueError as exc:
        raise ConfigError(f"plan.mfu / plan.num_examples: not a number ({exc})") from None
    plan = make_plan(cfg, gpu=options.get("gpu", "H100"), mfu=mfu, num_examples=num_examples)
    for line in render(plan):
        print(line)
    if plan.batch_refused:
        print(f"embedforge-plan: config key 'data.global_batch_size': declares {plan.declared_global_batch}, but "
              f"nodes x devices x batch_size x accumulation = {plan.global_batch}", file=sys.stderr)
        return 2
    return 0 if plan.fits else 1


if __name__ == "__main__":
    sys.exit(main())
