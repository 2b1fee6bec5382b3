"""The error contract: expected failures (bad config, bad data, a missing file, a refusing API) derive from
EmbedforgeError, and every CLI prints them as one line, `embedforge-<tool>: <message>`, exit 2.
Anything else is a bug and keeps its traceback."""

from __future__ import annotations


class EmbedforgeError(Exception):
    """An expected failure whose message alone tells the user what to fix (a config key or file:line)."""


class ConfigError(EmbedforgeError, ValueError):
    """A composed config that cannot run (names the key)."""


class DataError(EmbedforgeError, ValueError):
    """Input data that cannot be used (names file:line)."""


class MissingFileError(EmbedforgeError, FileNotFoundError):
    """A file or folder the run needs does not exist."""


class ServiceError(EmbedforgeError, RuntimeError):
    """A model hub, API server or environment refused or lacks something the run needs."""
