"""deploy/k8s: kustomize builds both variants, every object passes the Kubernetes schema of
several releases (offline, kubernetes-validate), and the objects agree with each other."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from gateway.settings import load_settings
from tests.deploy.tools import kubectl
from tests.fixtures.processes import REPO_ROOT
from vllm_server.launcher import VllmConfig, build_command

BASE = REPO_ROOT / "deploy/k8s/base"
OPERATOR = REPO_ROOT / "deploy/k8s/prometheus-operator"
# The oldest release the manifests need (the preStop sleep action) and the newest the
# validator knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
Objects = dict[tuple[str, str], dict]


def build(directory: Path) -> Objects:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents}


@pytest.fixture(scope="module")
def base() -> Objects:
    return build(BASE)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_schema(base: Objects, version: str) -> None:
    for key, document in base.items():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{key} is invalid for Kubernetes {version}: {error.message}")


def pod_spec(objects: Objects, kind: str, name: str) -> dict:
    return objects[(kind, name)]["spec"]["template"]["spec"]


def selects(selector: dict[str, str], objects: Objects, kind: str, name: str) -> bool:
    labels = objects[(kind, name)]["spec"]["template"]["metadata"]["labels"]
    return selector.items() <= labels.items()


def test_gateway_runs_several_replicas_with_probes_autoscaling_and_a_budget(
    base: Objects,
) -> None:
    deployment = base[("Deployment", "vllm-gateway")]
    assert deployment["spec"]["replicas"] >= 2
    [container] = pod_spec(base, "Deployment", "vllm-gateway")["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = base[("HorizontalPodAutoscaler", "vllm-gateway")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "vllm-gateway",
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    budget = base[("PodDisruptionBudget", "vllm-gateway")]["spec"]
    assert selects(budget["selector"]["matchLabels"], base, "Deployment", "vllm-gateway")
    assert selects(
        base[("Service", "vllm-gateway")]["spec"]["selector"], base, "Deployment", "vllm-gateway"
    )


def test_gateway_settings_and_secrets_are_consistent(
    base: Objects, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [container] = pod_spec(base, "Deployment", "vllm-gateway")["containers"]
    secret = base[("Secret", "vllm-gateway-secrets")]["stringData"]
    for variable in container["env"]:
        if "valueFrom" in variable:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == "vllm-gateway-secrets"
            monkeypatch.setenv(variable["name"], secret[reference["key"]])
    config = tmp_path / "gateway.yaml"
    config.write_text(base[("ConfigMap", "vllm-gateway-config")]["data"]["gateway.yaml"])
    settings = load_settings(config)
    assert str(settings.upstream.url) == "http://vllm:8000/"  # the headless Service below
    assert settings.store.redis_url == "redis://redis:6379/0"
    assert settings.server.port == container["ports"][0]["containerPort"]
    assert settings.auth.key_hash_secret is not None
    assert settings.admin.all_keys()


def test_vllm_has_one_gpu_per_replica_behind_a_headless_service(base: Objects) -> None:
    [container] = pod_spec(base, "Deployment", "vllm")["containers"]
    assert container["image"].startswith("vllm/vllm-openai:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    service = base[("Service", "vllm")]["spec"]
    assert service["clusterIP"] == "None"
    assert selects(service["selector"], base, "Deployment", "vllm")
    assert service["ports"][0]["port"] == 8000
    launcher = build_command(
        VllmConfig(
            model="/models/base",
            adapters={
                "tenant-a": "/models/adapters/tenant-a",
                "tenant-b": "/models/adapters/tenant-b",
            },
            max_loras=4,
            max_lora_rank=16,
            runtime_lora_updating=True,
            device="gpu",
            host="0.0.0.0",
            port=8000,
        )
    )
    assert container["args"] == launcher.argv[2:]
    assert {v["name"]: v["value"] for v in container["env"]} == launcher.env


def test_redis_keeps_an_append_only_file_on_a_volume(base: Objects) -> None:
    redis = base[("StatefulSet", "redis")]
    [container] = redis["spec"]["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert selects(base[("Service", "redis")]["spec"]["selector"], base, "StatefulSet", "redis")


def test_pods_carry_scrape_annotations(base: Objects) -> None:
    for name, port in (("vllm-gateway", "8080"), ("vllm", "8000")):
        annotations = base[("Deployment", name)]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port


def test_service_monitors_select_the_services_by_their_port_names() -> None:
    objects = build(OPERATOR)
    for name in ("vllm-gateway", "vllm"):
        monitor = objects[("ServiceMonitor", name)]["spec"]
        service = objects[("Service", name)]
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        port_names = {port["name"] for port in service["spec"]["ports"]}
        assert {endpoint["port"] for endpoint in monitor["endpoints"]} <= port_names
