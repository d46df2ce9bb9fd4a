"""One typed settings object, read from a YAML file and overridden by environment variables.

Environment variables use the prefix ``VLLM_GATEWAY_`` and ``__`` between nested names, e.g.
``VLLM_GATEWAY_UPSTREAM__URL=http://vllm:8000``. The YAML file is named by ``--config`` or
``VLLM_GATEWAY_CONFIG``. Precedence: init arguments > environment > YAML > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, HttpUrl, SecretStr
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


class StoreSettings(BaseModel):
    redis_url: str | None = Field(
        None, description="shared state for several instances; unset: embedded SQLite file"
    )
    sqlite_path: Path = Field(Path("gateway.db"), description="the embedded store's file")
    redis_prefix: str = Field("vgw:", description="prefix of every Redis key the gateway writes")
    redis_timeout_s: float = Field(0.5, gt=0, description="no Redis call waits longer")


class AuthSettings(BaseModel):
    enabled: bool = Field(True, description="off: /v1 is open and model names pass through")
    key_hash_secret: SecretStr | None = Field(
        None,
        description="HMAC secret for stored key hashes; unset with SQLite: generated once and "
        "kept in <sqlite_path>.secret; required with Redis (same on every instance)",
    )
    key_cache_ttl_s: float = Field(10.0, gt=0, description="validated keys kept in memory")


class AdminSettings(BaseModel):
    keys: list[SecretStr] = Field(
        default_factory=list, description="admin API keys (env: a JSON list)"
    )
    keys_file: Path | None = Field(None, description="file with one admin key per line")

    def all_keys(self) -> list[str]:
        keys = [key.get_secret_value() for key in self.keys]
        if self.keys_file is not None:
            lines = self.keys_file.read_text().splitlines()
            keys.extend(line.strip() for line in lines if line.strip())
        return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VLLM_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()
    admin: AdminSettings = AdminSettings()

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
    if config_path is None:
        return Settings(**overrides)
    previous = os.environ.get(CONFIG_ENV_VAR)
    os.environ[CONFIG_ENV_VAR] = str(config_path)
    try:
        return Settings(**overrides)
    finally:
        if previous is None:
            del os.environ[CONFIG_ENV_VAR]
        else:
            os.environ[CONFIG_ENV_VAR] = previous
