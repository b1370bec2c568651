"""deploy/k8s/: every manifest valid against the Kubernetes API schemas (offline, strict), the pod rules the
README states on every workload, the kustomization complete, hgr-config equal to env.production and
parseable by hgr's own settings, and the Prometheus scrape jobs accepted by promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dotenv import dotenv_values

from hgr.common.config import Settings, load_settings
from tests.hub_support import COMPOSE_HUB, interpolate
from tests.support import ROOT, need

K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES = "1.31"  # the oldest release still maintained upstream when these were written
HGR = {"hgr-hub", "hgr-edge"}
# Where hgr-config differs from env.production, and why: the Service is named `hgr-redis` here.
CONFIG_OVERRIDES = {"REDIS_HOST": "hgr-redis"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def workloads() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in documents(p) if d["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_api_schemas(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secrets_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["namespace"] == "hgr"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS if p.name != "secrets.example.yaml")
    assert {i["name"] for i in kustomization["images"]} == HGR


@pytest.mark.parametrize("workload", workloads(), ids=lambda d: str(d["metadata"]["name"]))
def test_every_pod_is_locked_down_and_has_no_service_links(workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) <= set(container["resources"]["limits"])
        assert "livenessProbe" in container and "readinessProbe" in container


@pytest.mark.parametrize("name", sorted(HGR))
def test_hgr_containers_probe_health_and_ready_on_their_port_as_uid_10001(name: str) -> None:
    workload = next(w for w in workloads() if w["metadata"]["name"] == name)
    pod = workload["spec"]["template"]["spec"]
    [container] = pod["containers"]
    port = container["ports"][0]
    assert pod["securityContext"]["runAsUser"] == 10001  # the images' user
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_hgr_config_is_env_production_and_hgr_parses_it() -> None:
    config = next(d for d in documents(K8S / "config.yaml") if d["kind"] == "ConfigMap")["data"]
    production = {k: v for k, v in dotenv_values(ROOT / "env.production").items() if v is not None}
    assert config == {**production, **CONFIG_OVERRIDES}
    # The secrets' placeholders stand in for the real values; hgr's settings accept the whole environment.
    secrets = next(d for d in documents(K8S / "secrets.example.yaml"))["stringData"]
    env = {**config, "REDIS_URL": secrets["redis_url"], "MQTT_URL": secrets["mqtt_hub_url"],
           "RATE_LIMIT_REDIS_URL": secrets["rate_limit_redis_url"], "API_KEYS": secrets["api_keys"].strip()}
    settings = load_settings(env, env_file=None)
    assert isinstance(settings, Settings) and settings.redis_enabled and settings.auth_enabled
    assert "@hgr-redis-limits:6379/" in settings.rate_limit_redis_url


def test_the_two_redis_run_as_the_compose_file_runs_them() -> None:
    """hgr-redis and hgr-redis-limits have the arguments of docker-compose.hub.yml's `redis` and `redis-limits`
    (tests/test_scenario_limits_redis.py runs those), with the password from their Secret key and the
    compose file's default maxmemory; the hub's RATE_LIMIT_REDIS_URL comes from the Secret and names the
    limits' Service."""
    compose = yaml.safe_load(COMPOSE_HUB.read_text())["services"]
    deployments = {w["metadata"]["name"]: w for w in workloads()}
    secrets = next(d for d in documents(K8S / "secrets.example.yaml"))["stringData"]
    for name, service, key in (("hgr-redis", "redis", "redis_password"),
                               ("hgr-redis-limits", "redis-limits", "redis_limits_password")):
        [container] = deployments[name]["spec"]["template"]["spec"]["containers"]
        expected = [interpolate(str(arg), {"REDIS_PASSWORD": "$(REDIS_PASSWORD)",
                                           "REDIS_LIMITS_PASSWORD": "$(REDIS_PASSWORD)"})
                    for arg in compose[service]["command"]]
        assert container["args"] == expected, name
        assert container["image"] == compose[service]["image"]
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert env["REDIS_PASSWORD"] == env["REDISCLI_AUTH"] == {"name": "hgr-secrets", "key": key}
        assert key in secrets
    [hub] = deployments["hgr-hub"]["spec"]["template"]["spec"]["containers"]
    hub_env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in hub["env"]}
    assert hub_env["RATE_LIMIT_REDIS_URL"] == {"name": "hgr-secrets", "key": "rate_limit_redis_url"}
    assert f":{secrets['redis_limits_password']}@hgr-redis-limits:6379/" in secrets["rate_limit_redis_url"]


def test_every_variable_an_hgr_container_sets_is_a_setting() -> None:
    known = {f.metadata["env"] for f in Settings.__dataclass_fields__.values() if "env" in f.metadata}
    for workload in workloads():
        if workload["metadata"]["name"] not in HGR:
            continue
        [container] = workload["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container["env"]} - {"EDGE_MQTT_PASSWORD"}  # composes MQTT_URL only
        assert names <= known, names - known


@pytest.mark.service
def test_the_scrape_jobs_pass_promtool_and_keep_the_job_names_the_alerts_use() -> None:
    need(shutil.which("promtool") is not None, "promtool (Debian's prometheus package)")
    scrape = K8S / "prometheus-scrape.yml"
    done = subprocess.run(["promtool", "check", "config", str(scrape)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(scrape.read_text())["scrape_configs"]}
    alerts = (ROOT / "monitoring" / "alerts.yml").read_text()
    assert jobs == HGR and all(f'job="{job}"' in alerts or job in alerts for job in jobs)
