"""Logging guards for a generate run: HTTP-library debug records dropped and API keys masked on every
handler, per-reject records kept out of the console."""

from __future__ import annotations

import logging
import os

from embedforge.synth.settings import GenerateSettings

# Loggers of the HTTP stack: at DEBUG they print request and response headers and bodies.
HTTP_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "hpack", "h2", "h11", "urllib3", "aiohttp")


class HttpLogGuard(logging.Filter):
    """On every handler: drops HTTP-library records below WARNING and masks the API keys.

    Setting those loggers to WARNING is not enough on its own: `hydra.verbose=...` or a user's
    logging config can lower them again, and a handler filter sees every record that is emitted.
    """

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in HTTP_LOGGERS and record.levelno < logging.WARNING:
            return False
        if self.secrets:
            text = record.getMessage()
            if any(s in text for s in self.secrets):
                for s in self.secrets:
                    text = text.replace(s, "<redacted>")
                record.msg, record.args = text, None
        return True


class FileOnly(logging.Filter):
    """On console handlers: keeps one-line-per-reject records out of the console (generate.log has them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "embedforge.synth.rejects"


def guard_logging(settings: GenerateSettings) -> None:
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    secrets = [os.environ.get(g.api_key_env, "") for g in settings.generators]
    guard = HttpLogGuard(secrets)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, HttpLogGuard) for f in handler.filters):
            handler.addFilter(guard)
        if not isinstance(handler, logging.FileHandler) and not any(isinstance(f, FileOnly) for f in handler.filters):
            handler.addFilter(FileOnly())
