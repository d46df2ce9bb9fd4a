"""uvicorn's logging set-up: its usual text format, or JSON records for log collectors.

The access lines (access_log.py) are JSON either way; `json_logs` turns the gateway's and
uvicorn's own records (start-up, warnings, tracebacks) into JSON on stderr as well, so a
collector can parse everything the container prints.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from uvicorn.config import LOGGING_CONFIG

from gateway.settings import ObservabilitySettings


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def uvicorn_log_config(settings: ObservabilitySettings) -> dict[str, Any]:
    """The `log_config` to hand uvicorn.run (applied in every worker process)."""
    if not settings.json_logs:
        return LOGGING_CONFIG
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {"uvicorn": {"level": "INFO"}, "uvicorn.access": {"level": "WARNING"}},
    }
