"""One typed settings object, read from a YAML file and overridden by environment variables.

Environment variables use the prefix ``VLLM_GATEWAY_`` and ``__`` between nested names, e.g.
``VLLM_GATEWAY_UPSTREAM__URL=http://vllm:8000``. The YAML file is named by ``--config`` or
``VLLM_GATEWAY_CONFIG``. Precedence: init arguments > environment > YAML > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, HttpUrl
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_ENV_VAR = "VLLM_GATEWAY_CONFIG"


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    drain_timeout_s: float = Field(30.0, gt=0, description="SIGTERM: time in-flight streams get")
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="larger bodies get 413")


class UpstreamSettings(BaseModel):
    url: HttpUrl | None = Field(
        None, description="vLLM OpenAI server base URL; unset: `serve` starts the stand-in"
    )
    api_key: str | None = Field(None, description="sent as Bearer token to vLLM's --api-key")
    connect_timeout_s: float = Field(5.0, gt=0)
    first_byte_timeout_s: float = Field(
        600.0, gt=0, description="until response headers; a non-streamed answer comes whole"
    )
    stream_idle_timeout_s: float = Field(60.0, gt=0, description="max gap between stream reads")
    max_connections: int = Field(1000, ge=1)
    keepalive_timeout_s: float = Field(30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VLLM_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get(CONFIG_ENV_VAR)
        if config_path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_path))
        return tuple(sources)


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `config_path` (or $VLLM_GATEWAY_CONFIG), the environment and `overrides`."""
    if config_path is not None:
        os.environ[CONFIG_ENV_VAR] = str(config_path)
    return Settings(**overrides)
