"""deploy/k8s: kustomize builds both variants, every object passes the Kubernetes schema of
several releases (offline, kubernetes-validate), and the objects agree with each other."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from gateway.redis_client import Topology, parse_redis_url
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
        if "secretKeyRef" in variable.get("valueFrom", {}):
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == "vllm-gateway-secrets"
            monkeypatch.setenv(variable["name"], secret[reference["key"]])
        elif "configMapKeyRef" in variable.get("valueFrom", {}):
            assert variable["valueFrom"]["configMapKeyRef"]["optional"]  # tracing: opt in
    config = tmp_path / "gateway.yaml"
    config.write_text(base[("ConfigMap", "vllm-gateway-config")]["data"]["gateway.yaml"])
    settings = load_settings(config)
    assert str(settings.upstream.url) == "http://vllm:8000/"  # the headless Service below
    assert settings.store.redis_url == "redis://redis:6379/0"
    password = secret["postgres-password"]  # postgres.yaml's, for the Service below
    assert settings.store.postgres_url == f"postgresql://gateway:{password}@postgres:5432/gateway"
    assert settings.server.port == container["ports"][0]["containerPort"]
    assert settings.auth.key_hash_secret is not None
    assert settings.admin.all_keys()
    sampler = {v["name"]: v.get("value") for v in container["env"]}
    assert sampler["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert 0 < float(sampler["OTEL_TRACES_SAMPLER_ARG"]) <= 1


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


def test_postgres_keeps_its_data_on_a_volume_and_every_gateway_pod_migrates_it_first(
    base: Objects,
) -> None:
    postgres = base[("StatefulSet", "postgres")]
    [container] = postgres["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["exec"]["command"][0] == "pg_isready"
    assert container["volumeMounts"][0]["name"] == "data"
    assert postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    service = base[("Service", "postgres")]["spec"]
    assert selects(service["selector"], base, "StatefulSet", "postgres")
    assert service["ports"][0]["port"] == 5432
    gateway = pod_spec(base, "Deployment", "vllm-gateway")
    [migrate] = gateway["initContainers"]
    [serve] = gateway["containers"]
    assert migrate["args"] == ["db", "migrate"]
    assert (migrate["image"], migrate["env"]) == (serve["image"], serve["env"])


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


# The overlays that put the gateway on a Redis Cluster or a Sentinel-watched Redis: they build,
# pass the schema, replace the base's one Redis, and name in the gateway's URL the very pods,
# ports and service name that their StatefulSets and scripts set up.
OVERLAYS = {
    name: REPO_ROOT / "deploy/k8s/overlays" / name for name in ("redis-cluster", "redis-sentinel")
}


@pytest.fixture(scope="module")
def overlays() -> dict[str, Objects]:
    return {name: build(directory) for name, directory in OVERLAYS.items()}


def gateway_config(objects: Objects) -> dict:
    return yaml.safe_load(objects[("ConfigMap", "vllm-gateway-config")]["data"]["gateway.yaml"])


def pod_names(objects: Objects, name: str) -> list[str]:
    """The DNS names of a StatefulSet's pods under its headless Service."""
    statefulset = objects[("StatefulSet", name)]["spec"]
    service = objects[("Service", statefulset["serviceName"])]["spec"]
    assert service["clusterIP"] == "None"
    assert service["publishNotReadyAddresses"] is True  # found by their peers while starting
    assert selects(service["selector"], objects, "StatefulSet", name)
    return [f"{name}-{i}.{statefulset['serviceName']}" for i in range(statefulset["replicas"])]


def shell_scripts(objects: Objects) -> list[str]:
    """Every script the overlays run: ConfigMap entries ending in .sh and `sh -c` arguments."""
    scripts = []
    for (kind, _), document in objects.items():
        if kind == "ConfigMap":
            scripts += [text for key, text in document["data"].items() if key.endswith(".sh")]
        if kind in ("StatefulSet", "Job"):
            for container in document["spec"]["template"]["spec"]["containers"]:
                if container.get("command") == ["sh", "-c"]:
                    scripts += container["args"]
    return scripts


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlay_objects_match_the_schema(
    overlays: dict[str, Objects], overlay: str, version: str
) -> None:
    for key, document in overlays[overlay].items():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{overlay}: {key} is invalid for Kubernetes {version}: {error.message}")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlays_replace_the_one_redis_and_change_only_the_gateways_redis_url(
    base: Objects, overlays: dict[str, Objects], overlay: str
) -> None:
    objects = overlays[overlay]
    assert ("StatefulSet", "redis") not in objects and ("Service", "redis") not in objects
    for key, document in base.items():
        if key[1] != "redis" and key != ("ConfigMap", "vllm-gateway-config"):
            assert objects[key] == document, f"{overlay} changes {key}"
    config, base_config = gateway_config(objects), gateway_config(base)
    url = config["store"].pop("redis_url")
    base_config["store"].pop("redis_url")
    assert config == base_config
    assert load_settings(None, store={"redis_url": url}).store.redis_url == url
    for key, document in objects.items():
        assert document["metadata"].get("namespace", "vllm-gateway") == "vllm-gateway", key
    for script in shell_scripts(objects):
        syntax = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
        assert syntax.returncode == 0, f"{overlay}: {syntax.stderr}\n{script}"


def test_cluster_overlay_seeds_the_gateway_with_the_cluster_pods(
    overlays: dict[str, Objects],
) -> None:
    objects = overlays["redis-cluster"]
    address = parse_redis_url(gateway_config(objects)["store"]["redis_url"])
    assert address.topology is Topology.CLUSTER
    pods = pod_names(objects, "redis-cluster")
    [service_port] = [
        port["port"]
        for port in objects[("Service", "redis-cluster")]["spec"]["ports"]
        if port["name"] == "redis"
    ]
    assert address.nodes and all(
        host in pods and port == service_port for host, port in address.nodes
    )
    config = objects[("ConfigMap", "redis-cluster-config")]["data"]["redis.conf"].splitlines()
    assert {"cluster-enabled yes", "appendonly yes", "cluster-require-full-coverage no"} <= set(
        config
    )
    [container] = pod_spec(objects, "StatefulSet", "redis-cluster")["containers"]
    assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/etc/redis", "/data"}
    assert "cluster-config-file /data/nodes.conf" in config  # its identity, on its volume
    # The Job joins every pod, with a replica per primary: len(pods) / 2 shards.
    [create] = pod_spec(objects, "Job", "redis-cluster-create")["containers"]
    [script] = create["args"]
    assert f"for i in {' '.join(str(i) for i in range(len(pods)))}; do" in script
    assert "--cluster-replicas 1" in script
    budget = objects[("PodDisruptionBudget", "redis-cluster")]["spec"]
    assert budget["maxUnavailable"] == 1
    assert selects(budget["selector"]["matchLabels"], objects, "StatefulSet", "redis-cluster")


def test_sentinel_overlay_points_the_gateway_at_a_quorum_of_sentinels(
    overlays: dict[str, Objects],
) -> None:
    objects = overlays["redis-sentinel"]
    address = parse_redis_url(gateway_config(objects)["store"]["redis_url"])
    assert address.topology is Topology.SENTINEL
    sentinels = pod_names(objects, "redis-sentinel")
    assert sorted(address.nodes) == [(host, 26379) for host in sentinels]
    scripts = objects[("ConfigMap", "redis-sentinel-scripts")]["data"]
    [monitor] = [line.split() for line in scripts["sentinel.sh"].splitlines() if "monitor" in line]
    assert monitor[:3] == ["sentinel", "monitor", address.service]
    quorum = int(monitor[-1])
    assert len(sentinels) // 2 < quorum <= len(sentinels)  # a majority decides a failover
    assert f"get-master-addr-by-name {address.service}" in scripts["primary.sh"]
    # With no sentinel up yet, the data pods take their first pod as the primary.
    data_pods = pod_names(objects, "redis-data")
    assert len(data_pods) >= 2
    assert f"primary=${{primary:-{data_pods[0]}}}" in scripts["data.sh"]
    assert "--appendonly yes" in scripts["data.sh"]
    for name, script in (("redis-data", "data.sh"), ("redis-sentinel", "sentinel.sh")):
        [container] = pod_spec(objects, "StatefulSet", name)["containers"]
        assert container["command"] == ["sh", f"/scripts/{script}"]
        [volume] = [
            v for v in pod_spec(objects, "StatefulSet", name)["volumes"] if v["name"] == "scripts"
        ]
        assert volume["configMap"]["name"] == "redis-sentinel-scripts"
