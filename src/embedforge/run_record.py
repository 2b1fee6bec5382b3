"""Run records: one JSON per finished run (training or evaluation), one format, written once.

A record says what ran (resolved config without secrets, parent run), on what (hardware, package
versions, git sha and whether the tree was dirty), and what came out (metrics, results, throughput,
peak memory). `write_run_record` refuses to overwrite: a finished record is never edited, so tables
built from records (embedforge-report) can be trusted.

This module is the one place that knows the file: its name (RECORD_FILE), its schema version
(SCHEMA_VERSION, stored under the key `format_version` in every record), and its one reader
(`read_run_record`), which embedforge-report, embedforge-export and the offline sweep use. A record
without the key is read as version 1; a record from a newer schema is refused with one line.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from embedforge.errors import DataError

RECORD_FILE = "run_record.json"
VERSION_KEY = "format_version"
# Raise it when a field changes meaning or goes away (adding a field does not need it), and teach
# read_run_record to read the older versions.
SCHEMA_VERSION = 1
SECRET_MARKERS = ("api_key", "apikey", "token", "secret", "password")
PACKAGES = ("torch", "transformers", "peft", "pytorch-lightning", "mteb", "sentence-transformers", "embedforge")


def redact(obj):
    """Drop values under keys that look like credentials before a config is recorded or logged anywhere."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(m in str(k).lower() for m in SECRET_MARKERS) and not str(k).endswith("_env")
                    else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def package_versions(packages=PACKAGES) -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo: Path | None = None) -> dict:
    """{"sha": HEAD, "dirty": uncommitted changes to tracked files} of the embedforge checkout (None outside git)."""
    from embedforge.paths import REPO_ROOT

    repo = repo or REPO_ROOT

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": None if status is None else bool(status)}


def hardware() -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": __import__("os").cpu_count(), "gpus": []}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def peak_memory() -> dict:
    """Peak resident memory of this process (and its finished children, e.g. spawned ranks), and GPU peak."""
    import torch

    to_gb = 1 / 2**20 if sys.platform != "darwin" else 1 / 2**30  # ru_maxrss: KiB on Linux, bytes on macOS
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_gb
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_gb
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"rss_gb": round(max(own, children), 2), "gpu_gb": None if gpu is None else round(gpu, 2)}


def environment() -> dict:
    return {"hardware": hardware(), "versions": package_versions(), "git": git_state(), "argv": sys.argv}


def build_run_record(kind: str, env: dict | None = None, **fields) -> dict:
    """kind: "train" or "evaluate"; fields: run_id, config, metrics, ... (None values are kept: missing, not
    invented). `env`: `environment()` taken when the run started (the code that ran, not the code at its end)."""
    if kind not in ("train", "evaluate"):
        raise ValueError(f"run record kind must be 'train' or 'evaluate', got {kind!r}")
    return {VERSION_KEY: SCHEMA_VERSION, "kind": kind, **fields, "peak_memory": peak_memory(),
            **(env or environment())}


def write_run_record(folder: str | Path, record: dict) -> Path:
    """Write `folder/run_record.json` once; an existing record is never overwritten."""
    path = Path(folder) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, default=str)
    except FileExistsError:
        raise FileExistsError(f"{path}: a finished run record is never rewritten; use a new run folder") from None
    return path


class RunRecordError(DataError):
    """A run record that cannot be read; the message names the file (and line)."""


def read_json_object(path: str | Path) -> dict:
    """A JSON file holding one object (a run record, a summary.json); errors name the file and line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunRecordError(f"{path}: does not exist") from None
    except json.JSONDecodeError as exc:
        raise RunRecordError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunRecordError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_run_record(path: str | Path) -> dict:
    """The record in `path` (a run_record.json or the folder holding one), its version checked."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    record = read_json_object(path)
    version = record.setdefault(VERSION_KEY, 1)  # records without the key are the first schema
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RunRecordError(f"{path}: {VERSION_KEY} must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise RunRecordError(f"{path}: run record schema version {version} is newer than this embedforge reads "
                             f"({SCHEMA_VERSION}); update embedforge to read it")
    return record


def record_metric(record: dict, name: str) -> float | None:
    """A metric of a training run record by its logged name: train/..., val/... (validation after
    training) or val/<task>/<score> (the in-training MTEB evaluation's last scores); None if absent."""
    found = {**(record.get("train_metrics") or {}), **(record.get("val_after") or {}),
             **((record.get("mteb_eval") or {}).get("final") or {})}.get(name)
    return None if found is None else float(found)
