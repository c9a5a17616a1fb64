"""Deployment files parse and name only stages and commands that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import STAGES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_manifest_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        assert _docs(path), path


def test_compose_runs_one_worker_service_per_stage_and_serve() -> None:
    compose = _docs(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert isinstance(services, dict)
    for stage in STAGES:
        assert services[stage]["command"][:3] == ["heal", "worker", stage]
    assert services["serve"]["command"][:2] == ["heal", "serve"]


def test_dashboards_and_alerts_use_metrics_heal_serve_exports() -> None:
    exported = set(re.findall(r'"(heal_[a-z_]+)"', "".join(
        p.read_text() for p in (ROOT / "pipeline" / "serve").glob("*.py"))))
    assert "heal_stream_lag" in exported
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = "\n".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    exprs += "\n" + (DEPLOY / "prometheus-rules.yaml").read_text()
    exprs += "\n" + (DEPLOY / "k8s" / "hpa.yaml").read_text()
    used = set(re.findall(r"\b(heal_[a-z_]+)", exprs))
    assert used and used <= exported, used - exported


def test_kubernetes_has_a_deployment_per_stage() -> None:
    names = {d["metadata"]["name"] for d in _docs(DEPLOY / "k8s" / "workers.yaml")}
    assert names == {f"heal-{stage}" for stage in STAGES}


def test_rate_and_increase_are_taken_of_counters_only() -> None:
    """increase()/rate() read every drop as a counter reset: over a gauge (such as the dead
    stream's length, which retention trims) they report growth that never happened."""
    source = (ROOT / "pipeline" / "serve" / "prometheus.py").read_text()
    kinds = dict(re.findall(r'"(heal_[a-z_]+)", "(counter|gauge|histogram)"', source))
    assert kinds["heal_dead_letters"] == "gauge"
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = "\n".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    exprs += "\n" + (DEPLOY / "prometheus-rules.yaml").read_text()
    for name in re.findall(r"\b(?:increase|rate|irate|resets)\((heal_[a-z_]+)", exprs):
        assert kinds.get(name, "counter") == "counter", name


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context: a pattern
    (``*``, ``?``, ``**``, ``!`` to take back) matching the path or a folder above it; the
    last matching pattern decides."""
    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for line in patterns:
        negate = line.startswith("!")
        rx = regex(line.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_heal_state_venv_and_git_out_of_the_image() -> None:
    """The Dockerfile does COPY . . and Docker does not read .gitignore: without a
    .dockerignore the builder's .heal/ (signing key, serve tokens, audit key, engine data),
    .heal.pg/, .venv and .git went into the image, and the k8s pods, which set no HEAL_HOME,
    used that baked-in state as their own."""
    path = ROOT / ".dockerignore"
    assert path.is_file(), "no .dockerignore: COPY . . ships .heal/ (keys, tokens) and .venv"
    patterns = [line.strip() for line in path.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    for secret in (".heal/keys/signing.key", ".heal/serve/approver.token", ".heal/audit.key",
                   ".heal/redis/dump.rdb", ".heal.pg/data/PG_VERSION", ".venv/bin/python",
                   ".git/config", "tests/fixtures/x/.heal/serve/viewer.token",
                   "pipeline/__pycache__/config.cpython-311.pyc", ".mypy_cache/x.json"):
        assert _ignored(patterns, secret), secret
    for needed in ("pyproject.toml", "README.md", "pipeline/cli/__init__.py",
                   "pipeline/serve/dashboard.html", "seeds/format.yaml",
                   "storage/__init__.py", "consumers/__init__.py", "producers/run.py"):
        assert (ROOT / needed).exists(), needed
        assert not _ignored(patterns, needed), needed
    dockerfile = (ROOT / "Dockerfile").read_text()
    home = re.search(r"^ENV HEAL_HOME=(\S+)", dockerfile, re.MULTILINE)
    assert home and not home[1].startswith("/app"), "the image's HEAL_HOME must not be /app/..."


def _containers(path: Path) -> list[dict[str, Any]]:
    return [c for d in _docs(path) if d.get("kind") == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"]]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kubernetes_pods_keep_heal_home_on_a_volume_of_their_own() -> None:
    k8s = DEPLOY / "k8s"
    containers = _containers(k8s / "workers.yaml") + _containers(k8s / "serve.yaml")
    assert len(containers) == len(STAGES) + 1
    for c in containers:
        home = _env(c)["HEAL_HOME"]["value"]
        assert not home.startswith("/app"), c["name"]
        assert home in [m["mountPath"] for m in c.get("volumeMounts", [])], c["args"]


def test_kubernetes_serve_is_probed_without_a_token_and_scraped_with_one() -> None:
    """serve.yaml probed /healthz and was annotated for scraping, with no token anywhere:
    heal serve on 0.0.0.0 answered both 401, so the pod never became Ready and the HPA and
    alerts got no data; clients using the Service name got 403 (no HEAL_SERVE_HOSTS)."""
    from pipeline.serve.server import OPEN_PATHS

    k8s = DEPLOY / "k8s"
    docs = _docs(k8s / "serve.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (serve,) = _containers(k8s / "serve.yaml")
    for probe in ("readinessProbe", "livenessProbe"):
        assert serve[probe]["httpGet"]["path"] in OPEN_PATHS, probe
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert "prometheus.io/scrape" not in annotations  # such a scrape sends no token: 401
    env = _env(serve)
    hosts = env["HEAL_SERVE_HOSTS"]["value"].split(",")
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["metadata"]["name"] in hosts
    assert "heal-serve.$(POD_NAMESPACE).svc.cluster.local" in hosts
    assert list(env).index("POD_NAMESPACE") < list(env).index("HEAL_SERVE_HOSTS")
    viewer = env["HEAL_SERVE_VIEWER_TOKEN"]["valueFrom"]["secretKeyRef"]
    (monitor,) = _docs(k8s / "servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["type"] == "Bearer"
    assert endpoint["authorization"]["credentials"] == viewer  # the token serve accepts
    secrets = {d["metadata"]["name"]: d["stringData"]
               for d in _docs(k8s / "secret.example.yaml")}
    assert viewer["key"] in secrets[viewer["name"]]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()


def test_shared_keys_and_the_serve_token_are_configured_not_generated_per_container() -> None:
    """compose.yaml's serve generated its token inside the container (nobody could read it)
    and again on every recreate (HEAL_HOME was no volume); neither compose nor the k8s Secret
    carried HEAL_AUDIT_KEY, which every host of one installation must share; validate and
    apply mounted no repository."""
    secrets = {d["metadata"]["name"]: d["stringData"]
               for d in _docs(DEPLOY / "k8s" / "secret.example.yaml")}
    for key in ("HEAL_SIGNING_KEY", "HEAL_AUDIT_KEY", "HEAL_SERVE_TOKEN"):
        assert key in secrets["heal-engines"], key
    compose = _docs(DEPLOY / "compose.yaml")[0]
    services: dict[str, Any] = compose["services"]
    for name in (*STAGES, "serve"):
        env = services[name]["environment"]
        for key in ("HEAL_SIGNING_KEY", "HEAL_AUDIT_KEY"):
            assert env[key].startswith(f"${{{key}:?"), (name, key)
        home = env["HEAL_HOME"]
        volumes = services[name]["volumes"]
        named = [v.split(":", 1)[0] for v in volumes if v.endswith(f":{home}")]
        assert named and named[0] in compose["volumes"], (name, volumes)
    assert services["serve"]["environment"]["HEAL_SERVE_TOKEN"].startswith(
        "${HEAL_SERVE_TOKEN:?")
    for name in ("validate", "apply"):
        repos = [v for v in services[name]["volumes"] if "HEAL_REPOS" in v]
        assert repos, name
        source, target = repos[0].split("}:", 1)
        assert source + "}" == target, "the repositories must be at the path events name"
