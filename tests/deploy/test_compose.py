"""docker-compose.yml as `docker compose config` resolves it (the client parses; no engine)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.settings import Settings
from tests.deploy.tools import compose_command
from tests.fixtures.processes import REPO_ROOT
from vllm_server.launcher import VllmConfig, build_command

SECRETS = {
    "GATEWAY_ADMIN_KEY": "admin-key-for-tests",
    "GATEWAY_KEY_HASH_SECRET": "hash-secret",
    "GATEWAY_POSTGRES_PASSWORD": "postgres-password",
}


def compose(tmp_path: Path, *args: str, secrets: bool = True) -> subprocess.CompletedProcess[str]:
    argv, env = compose_command(tmp_path / "docker-config")
    if secrets:
        env = {**env, **SECRETS}
    return subprocess.run(
        [*argv, "--project-directory", str(REPO_ROOT), *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )


def resolved(tmp_path: Path, profile: str) -> dict:
    result = compose(tmp_path, "--profile", profile, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(("profile", "model_server"), [("gpu", "vllm"), ("cpu", "vllm-standin")])
def test_each_profile_is_a_whole_stack(tmp_path: Path, profile: str, model_server: str) -> None:
    services = resolved(tmp_path, profile)["services"]
    assert set(services) == {
        model_server,
        "redis",
        "postgres",
        "migrate",
        "gateway",
        "prometheus",
        "grafana",
        "jaeger",
    }
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        if mount["type"] == "bind":
            assert Path(mount["source"]).exists(), mount


def test_secrets_must_be_given(tmp_path: Path) -> None:
    result = compose(tmp_path, "--profile", "cpu", "config", secrets=False)
    assert result.returncode != 0
    assert any(name in result.stderr for name in SECRETS), result.stderr


def test_vllm_runs_the_stock_image_on_a_gpu_with_the_launchers_flags(tmp_path: Path) -> None:
    vllm = resolved(tmp_path, "gpu")["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert device["count"] == 1
    launcher = build_command(
        VllmConfig(
            model="/models/base",
            adapters={"tenant-a": "/adapters/tenant-a", "tenant-b": "/adapters/tenant-b"},
            max_loras=4,
            max_lora_rank=16,
            runtime_lora_updating=True,
            device="gpu",
            host="0.0.0.0",
            port=8000,
        )
    )
    assert launcher.argv[1] == "serve"  # the image's entrypoint is `vllm serve`
    assert vllm["command"] == launcher.argv[2:]
    assert vllm["environment"] == launcher.env
    adapters = [v for v in vllm["volumes"] if v["target"] == "/adapters"]
    assert adapters and adapters[0]["read_only"]


def test_the_standin_answers_as_vllm_and_redis_keeps_an_append_only_file(tmp_path: Path) -> None:
    services = resolved(tmp_path, "cpu")["services"]
    assert "vllm" in services["vllm-standin"]["networks"]["default"]["aliases"]
    assert services["vllm-standin"]["entrypoint"] == ["vllm-server"]
    assert services["vllm-standin"]["command"][0] == "standin"
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v["target"] == "/data" for v in services["redis"]["volumes"])


def test_the_gateways_environment_is_valid_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = resolved(tmp_path, "cpu")["services"]["gateway"]
    for name, value in gateway["environment"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VLLM_GATEWAY_CONFIG", raising=False)
    settings = Settings()
    assert str(settings.upstream.url) == "http://vllm:8000/"
    assert settings.store.redis_url == "redis://redis:6379/0"
    password = SECRETS["GATEWAY_POSTGRES_PASSWORD"]
    assert settings.store.postgres_url == f"postgresql://gateway:{password}@postgres:5432/gateway"
    assert settings.admin.all_keys() == [SECRETS["GATEWAY_ADMIN_KEY"]]
    assert settings.server.workers == 2
    assert gateway["depends_on"]["redis"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert not gateway["depends_on"]["vllm"]["required"]


def test_postgres_keeps_its_data_on_a_volume_and_is_migrated_before_the_gateway(
    tmp_path: Path,
) -> None:
    services = resolved(tmp_path, "cpu")["services"]
    postgres, migrate = services["postgres"], services["migrate"]
    assert any(v["target"] == "/var/lib/postgresql/data" for v in postgres["volumes"])
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert migrate["command"] == ["db", "migrate"]
    assert migrate["environment"] == services["gateway"]["environment"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_prometheus_scrapes_the_compose_services_by_name() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["vllm-gateway"]["dns_sd_configs"][0] == {
        "names": ["gateway"],
        "type": "A",
        "port": 8080,
        "refresh_interval": "30s",
    }
    assert jobs["vllm"]["dns_sd_configs"][0]["names"] == ["vllm"]
    assert jobs["vllm"]["dns_sd_configs"][0]["port"] == 8000
