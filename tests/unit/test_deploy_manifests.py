"""Deployment files parse and name only stages and commands that exist."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import STAGES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _docs(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_every_manifest_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        assert _docs(path), path


def test_compose_runs_one_worker_service_per_stage() -> None:
    compose = _docs(DEPLOY / "compose.yaml")[0]
    services = compose["services"]
    assert isinstance(services, dict)
    for stage in STAGES:
        assert services[stage]["command"][:3] == ["heal", "worker", stage]


def test_kubernetes_has_a_deployment_per_stage() -> None:
    names = {d["metadata"]["name"] for d in _docs(DEPLOY / "k8s" / "workers.yaml")}  # type: ignore[index]
    assert names == {f"heal-{stage}" for stage in STAGES}
