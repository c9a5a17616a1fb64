"""Deployment files parse and name only stages and commands that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from pipeline.config import STAGES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _docs(path: Path) -> list[dict[str, object]]:
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
    names = {d["metadata"]["name"] for d in _docs(DEPLOY / "k8s" / "workers.yaml")}  # type: ignore[index]
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
