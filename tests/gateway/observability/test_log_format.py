"""uvicorn's log set-up, applied in a child process the way uvicorn applies it."""

from __future__ import annotations

import subprocess
import sys

import orjson
from uvicorn.config import LOGGING_CONFIG

from gateway.observability.log_format import uvicorn_log_config
from gateway.settings import ObservabilitySettings
from tests.fixtures.processes import REPO_ROOT

CHILD = """
import logging, logging.config
from gateway.observability.log_format import uvicorn_log_config
from gateway.settings import ObservabilitySettings
logging.config.dictConfig(uvicorn_log_config(ObservabilitySettings(json_logs=True)))
logging.getLogger("uvicorn.error").info("Started server process")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("gateway").exception("request %s failed", "r-1")
"""


def test_text_logs_are_uvicorns_own() -> None:
    assert uvicorn_log_config(ObservabilitySettings()) is LOGGING_CONFIG


def test_json_logs_are_one_object_per_record() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO_ROOT, capture_output=True, check=True
    )
    started, failed = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert started["level"] == "INFO"
    assert started["logger"] == "uvicorn.error"
    assert started["message"] == "Started server process"
    assert failed["level"] == "ERROR"
    assert failed["message"] == "request r-1 failed"
    assert "ZeroDivisionError" in failed["exception"]
