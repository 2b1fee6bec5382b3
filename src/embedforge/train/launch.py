"""One run folder for all processes of a multi-process launch (torchrun, SLURM's srun).

Hydra names each run folder after the second its process started (conf/train.yaml: hydra.run.dir).
Under torchrun or srun every rank is a separate process that composes its own config, so two ranks
that start on either side of a second boundary (or on nodes with slightly different clocks) would
write into two folders: configs and logs split, and `ckpt_path=last` could miss a checkpoint. Before
Hydra starts, the ranks agree on the folder's last part:

- torchrun: rank 0 picks the timestamp and shares it through the launcher's own key-value store
  (the TCPStore at MASTER_ADDR:MASTER_PORT that workers join anyway);
- SLURM: `slurm-<job id>`, plus `-requeue<n>` after a requeue (SLURM_RESTART_COUNT), which every task
  of the job sees alike.

An explicit `hydra.run.dir=...` on the command line is left alone, as are single-process runs and
ranks started by Lightning itself (their launcher already passes the folder on).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping

STAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"  # the same as conf/train.yaml's hydra.run.dir
RUN_DIR = "hydra.run.dir=${paths.output_root}/${run_name}/"
_STORE_KEY = "embedforge/run_stamp"
_STORE_TIMEOUT_S = 600  # ranks start at about the same time; rank 0's import time is the wait


def launcher(env: Mapping[str, str] = os.environ) -> str | None:
    """"torchrun" or "slurm" when an external launcher started several ranks of this run, else None."""
    if "TORCHELASTIC_RUN_ID" in env and int(env.get("WORLD_SIZE", "1")) > 1:
        return "torchrun"
    # Lightning's own test for srun (SLURM_JOB_NAME bash/interactive = an allocation used by hand).
    if ("SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")
            and int(env["SLURM_NTASKS"]) > 1):
        return "slurm"
    return None


def slurm_stamp(env: Mapping[str, str] = os.environ) -> str:
    restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    return f"slurm-{env['SLURM_JOB_ID']}" + (f"-requeue{restarts}" if restarts else "")


def torchrun_stamp(env: Mapping[str, str] = os.environ) -> str | None:
    """Rank 0's timestamp, shared through torchrun's store; None where workers do not share it
    (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1)."""
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    import torch.distributed as dist

    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False,
                          timeout=_dt.timedelta(seconds=_STORE_TIMEOUT_S))
    # One key per (re)start of the worker group: a restarted group picks a new folder.
    key = f"{_STORE_KEY}/{env.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if int(env["RANK"]) == 0:
        store.set(key, _dt.datetime.now().strftime(STAMP_FORMAT))
    return store.get(key).decode()


def shared_run_dir(argv: list[str], env: Mapping[str, str] = os.environ) -> list[str]:
    """argv plus a `hydra.run.dir` override naming the same folder on every rank, where needed."""
    if any(a.startswith(("hydra.run.dir=", "-m", "--multirun")) for a in argv):
        return argv
    kind = launcher(env)
    stamp = slurm_stamp(env) if kind == "slurm" else torchrun_stamp(env) if kind == "torchrun" else None
    return argv if stamp is None else [*argv, RUN_DIR + stamp]
