"""The one place where a CLI turns an expected failure (embedforge.errors.EmbedforgeError) into one line.

    @hydra.main(...)
    @one_line_errors("train")
    def hydra_main(cfg): ...

prints `embedforge-train: <message>` on stderr and exits with 2, without a traceback. It must sit
inside the Hydra task function: an exception that leaves the task function is printed by Hydra with
its own traceback. HYDRA_FULL_ERROR=1 (or `verbose`, for CLIs without Hydra) re-raises instead, so
the traceback is there when it is wanted. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Callable, TypeVar

from embedforge.errors import EmbedforgeError

EXIT_CODE = 2
F = TypeVar("F", bound=Callable)

log = logging.getLogger("embedforge.cli")


def full_error_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def report(tool: str, exc: EmbedforgeError) -> None:
    """Print the one line; also into the job's log file when Hydra set up logging (the console sees it once)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (exc,), None))
    print(f"embedforge-{tool}: {exc}", file=sys.stderr, flush=True)


def one_line_errors(tool: str, verbose: Callable[[], bool] = full_error_wanted) -> Callable[[F], F]:
    """Decorator: EmbedforgeError -> `embedforge-<tool>: <message>` on stderr, exit 2 (unless verbose())."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except EmbedforgeError as exc:
                if verbose():
                    raise
                report(tool, exc)
                sys.exit(EXIT_CODE)

        return wrapper  # type: ignore[return-value]

    return decorate
