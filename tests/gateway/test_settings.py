from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import load_settings


def test_yaml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "server:\n  port: 9100\n  max_body_bytes: 1000\n"
        "upstream:\n  url: http://vllm:8000\n  connect_timeout_s: 2\n"
    )
    monkeypatch.setenv("VLLM_GATEWAY_SERVER__PORT", "9200")
    settings = load_settings(config)
    assert settings.server.port == 9200  # environment wins over the file
    assert settings.server.max_body_bytes == 1000
    assert str(settings.upstream.url) == "http://vllm:8000/"
    assert settings.upstream.connect_timeout_s == 2


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_GATEWAY_CONFIG", raising=False)
    settings = load_settings()
    assert settings.upstream.url is None
    assert settings.server.max_body_bytes == 4 * 1024 * 1024


def test_unknown_or_invalid_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("server:\n  port: -1\n")
    with pytest.raises(ValidationError):
        load_settings(config)
    config.write_text("sever:\n  port: 1\n")
    with pytest.raises(ValidationError):
        load_settings(config)
