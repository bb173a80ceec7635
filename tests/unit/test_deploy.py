"""deploy/ checked without a Docker engine or a cluster: the files parse, reference what exists,
and keep the promises the operations guide makes (probes, drain, non-root, no secrets)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def manifests() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((DEPLOY / "kubernetes" / "parley.yaml").read_text())
    return {doc["kind"]: doc for doc in docs if doc}


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert re.search(r"^USER parley$", text, re.M)
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: not in the repository"


def test_the_package_the_image_installs_carries_its_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    (wheel,) = tmp_path.glob("parley-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "parley/storage/migrations/env.py" in names
    assert any(n.startswith("parley/storage/migrations/versions/0001") for n in names)
    assert "parley/py.typed" in names


def test_compose_runs_three_hubs_behind_a_websocket_aware_balancer() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "hub1", "hub2", "hub3", "lb"} <= set(services)
    for name in ("hub1", "hub2", "hub3"):
        hub = services[name]
        env = hub["environment"]
        assert env["PARLEY_BROKER_URL"].startswith("redis://redis:")
        assert env["PARLEY_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert hub["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "--no-migrate" in hub["command"]
    nginx = (DEPLOY / "nginx.conf").read_text()
    for name in ("hub1", "hub2", "hub3"):
        assert f"server {name}:8000" in nginx
    assert "proxy_set_header Upgrade $http_upgrade" in nginx
    assert "proxy_read_timeout 3600s" in nginx


def test_kubernetes_manifests_probe_drain_and_scale() -> None:
    kinds = manifests()
    assert set(kinds) == {
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (hub,) = pod["containers"]
    assert hub["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert hub["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "preStop" in hub["lifecycle"]
    assert pod["terminationGracePeriodSeconds"] >= 20
    assert pod["securityContext"]["runAsNonRoot"] is True
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["Service"]["spec"]["selector"].items() <= labels.items()
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "parley"
    backend = kinds["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == kinds["Service"]["metadata"]["name"]


def test_no_secret_values_in_deploy() -> None:
    for env in manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]:
        assert "value" not in env, f"{env['name']} must come from a Secret"
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert "${PARLEY_SECRET:?" in compose
