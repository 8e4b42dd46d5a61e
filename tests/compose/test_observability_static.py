"""Static checks of the observability extras: no Docker engine, no broker.

The compose profiles (kafka-ui under `ui`; Prometheus and Grafana under `monitoring`), the
metrics port and healthchecks of the apps, the Prometheus scrape config, Grafana's provisioning
and its dashboard, whose every metric name must be one the code really exports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from fraudcore.health import BrokerHealth
from fraudcore.metrics import DetectorMetrics, GeneratorMetrics
from fraudcore.metrics_server import MetricsServer
from tests.compose.compose_files import environment_of, load_compose
from tests.compose.compose_schema import load_compose_schema

REPO = Path(__file__).resolve().parents[2]
KAFKA_FILE = "docker-compose.kafka.yml"
APP_FILE = "docker-compose.yml"
APPS = ("generator", "detector")
OBSERVABILITY = REPO / "observability"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
GRAFANA_DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
GRAFANA_PROVISIONING = OBSERVABILITY / "grafana" / "provisioning"
PINNED_TAG = re.compile(r"v?\d+(\.\d+)+([-.][\w.-]+)?")
METRIC_NAME = re.compile(r"\b(fraud_[a-z_]+)\b")


@pytest.fixture(scope="module")
def kafka() -> dict[str, Any]:
    return load_compose(KAFKA_FILE)


@pytest.fixture(scope="module")
def app() -> dict[str, Any]:
    return load_compose(APP_FILE)


def _service(doc: dict[str, Any], name: str) -> dict[str, Any]:
    services = doc.get("services", {})
    assert name in services, f"no service {name!r}"
    service: dict[str, Any] = services[name]
    return service


def _image_tag(image: str) -> tuple[str, str]:
    name = image.partition("@")[0]
    repo, sep, tag = name.rpartition(":")
    return (repo, tag) if sep and "/" not in tag else (name, "")


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each ./relative bind mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            mounts[target] = REPO / source
    return mounts


SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _exported_names() -> set[str]:
    """Every series name the services' registries expose (with _total, _bucket, ...), also
    for labelled metrics that have no series yet (dead letters before the first one)."""
    names = set()
    for metrics in (DetectorMetrics(), GeneratorMetrics(target_rate=1.0)):
        for family in metrics.registry.collect():
            names |= {sample.name for sample in family.samples}
            names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ())}
    return names


def _dashboard() -> dict[str, Any]:
    files = sorted(GRAFANA_DASHBOARDS.glob("*.json"))
    assert len(files) == 1, f"expected one dashboard in {GRAFANA_DASHBOARDS}, found {files}"
    doc: dict[str, Any] = json.loads(files[0].read_text())
    return doc


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# --------------------------------------------------------------------------- compose


@pytest.mark.parametrize("name", [KAFKA_FILE, APP_FILE])
def test_compose_file_with_profiles_matches_compose_spec(name: str) -> None:
    validator = load_compose_schema().validator()
    errors = [e.message for e in validator.iter_errors(load_compose(name))]
    assert not errors, f"{name} violates the Compose Specification: {errors}"


def test_extras_are_behind_profiles_and_the_default_up_stays_lean(
    kafka: dict[str, Any], app: dict[str, Any]
) -> None:
    assert _service(kafka, "kafka-ui").get("profiles") == ["ui"]
    assert _service(app, "prometheus").get("profiles") == ["monitoring"]
    assert _service(app, "grafana").get("profiles") == ["monitoring"]
    for doc, names in ((kafka, ("broker", "kafka-init")), (app, APPS)):
        for name in names:
            assert not _service(doc, name).get("profiles"), f"{name} must start with a plain `up`"


@pytest.mark.parametrize(
    ("file", "name", "repo"),
    [
        (KAFKA_FILE, "kafka-ui", "ghcr.io/kafbat/kafka-ui"),
        (APP_FILE, "prometheus", "prom/prometheus"),
        (APP_FILE, "grafana", "grafana/grafana"),
    ],
)
def test_extra_images_are_pinned(file: str, name: str, repo: str) -> None:
    image = _service(load_compose(file), name)["image"]
    image_repo, tag = _image_tag(image)
    assert image_repo == repo
    assert tag != "latest"
    assert PINNED_TAG.fullmatch(tag), f"{image}: pin a concrete version tag"


def test_extras_publish_on_localhost_only(kafka: dict[str, Any], app: dict[str, Any]) -> None:
    for doc, name, port in ((kafka, "kafka-ui", 8080), (app, "prometheus", 9090)):
        ports = [str(p) for p in _service(doc, name).get("ports", [])]
        assert len(ports) == 1, f"{name}: {ports}"
        bind_ip, _published, target = ports[0].split(":")
        assert bind_ip == "127.0.0.1", f"{name} must not listen on every interface"
        assert int(target) == port
    grafana_ports = [str(p) for p in _service(app, "grafana").get("ports", [])]
    assert [p.split(":")[0] for p in grafana_ports] == ["127.0.0.1"]


def test_kafka_ui_points_at_the_broker(kafka: dict[str, Any]) -> None:
    ui = _service(kafka, "kafka-ui")
    env = environment_of(ui)
    assert env["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "broker:9092"
    assert ui["depends_on"]["broker"]["condition"] == "service_healthy"


# --------------------------------------------------------------------------- the apps


def _app_metrics_port(app: dict[str, Any], name: str) -> int:
    env = environment_of(_service(app, name))
    assert env.get("METRICS_PORT"), f"{name} needs METRICS_PORT (its /metrics and /health)"
    return int(env["METRICS_PORT"])


@pytest.mark.parametrize("name", APPS)
def test_app_serves_metrics_and_checks_its_health(app: dict[str, Any], name: str) -> None:
    assert 1 <= _app_metrics_port(app, name) <= 65535
    check = _service(app, name).get("healthcheck")
    assert check, f"{name} needs a healthcheck"
    assert not check.get("disable")
    test = check["test"]
    assert isinstance(test, list)
    # The images have python but no curl. No argument with spaces: some engines split an
    # exec-form argument on whitespace (podman's Docker API, containers/podman#26519).
    assert test == ["CMD", "python", "-m", "fraudcore.healthcheck"]
    assert (REPO / "fraudcore" / "healthcheck.py").is_file()
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check, f"healthcheck.{key} missing"


def test_app_metrics_ports_differ_and_have_their_own_variables(app: dict[str, Any]) -> None:
    """Where the containers share one network namespace, one port each keeps them apart."""
    ports = {name: _app_metrics_port(app, name) for name in APPS}
    assert len(set(ports.values())) == len(APPS), ports
    raw = yaml.safe_load((REPO / APP_FILE).read_text())
    for name in APPS:
        setting = environment_of(raw["services"][name])["METRICS_PORT"]
        assert setting == f"${{{name.upper()}_METRICS_PORT:-{ports[name]}}}", setting


def test_app_healthcheck_command_works(app: dict[str, Any]) -> None:
    """The compose healthcheck's own command, run here against a real /health: 0 ok, 1 not."""
    command = _service(app, "detector")["healthcheck"]["test"][1:]
    state = {"ok": True}

    def probe() -> None:
        if not state["ok"]:
            raise ConnectionError("broker down")

    health = BrokerHealth("detector", probe, stale_after=3600)
    server = MetricsServer(0, CollectorRegistry(), health, "detector", host="127.0.0.1").start()
    env = {**os.environ, "METRICS_PORT": str(server.port)}
    try:
        health.check_once()
        ok = subprocess.run(
            [sys.executable, *command[1:]],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr
        state["ok"] = False
        health.check_once()
        down = subprocess.run(
            [sys.executable, *command[1:]],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert down.returncode != 0
        assert b"503" in down.stderr
    finally:
        server.close()


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_every_app_copy_on_its_metrics_port(app: dict[str, Any]) -> None:
    prometheus = _service(app, "prometheus")
    mounts = _bind_mounts(prometheus)
    assert mounts.get("/etc/prometheus/prometheus.yml") == PROMETHEUS_CONFIG
    assert any("--config.file=/etc/prometheus/prometheus.yml" in c for c in prometheus["command"])
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in APPS:
        assert name in jobs, f"no scrape job for {name}"
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        # DNS discovery finds every container of a scaled service; static targets would not.
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name], "the compose service name, which Docker's DNS resolves"
        assert sd["type"] == "A"
        assert sd["port"] == _app_metrics_port(app, name)


# --------------------------------------------------------------------------- Grafana


def test_grafana_provisions_the_prometheus_datasource(app: dict[str, Any]) -> None:
    grafana = _service(app, "grafana")
    mounts = _bind_mounts(grafana)
    assert mounts.get("/etc/grafana/provisioning") == GRAFANA_PROVISIONING
    (file,) = sorted((GRAFANA_PROVISIONING / "datasources").glob("*.yml"))
    (source,) = yaml.safe_load(file.read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source.get("isDefault") is True
    assert "prometheus" in grafana.get("depends_on", [])


def test_grafana_loads_the_dashboard_from_its_mount(app: dict[str, Any]) -> None:
    mounts = _bind_mounts(_service(app, "grafana"))
    (file,) = sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.yml"))
    (provider,) = yaml.safe_load(file.read_text())["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert mounts.get(path) == GRAFANA_DASHBOARDS, f"{path} is not where the dashboards are"
    home = environment_of(_service(app, "grafana")).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (GRAFANA_DASHBOARDS / Path(home).relative_to(path)).is_file(), home


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    (file,) = sorted((GRAFANA_PROVISIONING / "datasources").glob("*.yml"))
    uid = yaml.safe_load(file.read_text())["datasources"][0]["uid"]
    dashboard = _dashboard()
    assert dashboard.get("uid")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"


def test_dashboard_queries_only_metrics_the_code_exports() -> None:
    exported = _exported_names()
    referenced = {name for expr in _exprs(_dashboard()) for name in METRIC_NAME.findall(expr)}
    assert referenced, "the dashboard queries no fraud_* metric"
    unknown = sorted(referenced - exported)
    assert not unknown, f"the dashboard queries metrics nobody exports: {unknown}"


def test_dashboard_charts_every_metric_of_the_services() -> None:
    families = set()
    for metrics in (DetectorMetrics(), GeneratorMetrics(target_rate=1.0)):
        families |= {f.name for f in metrics.registry.collect() if f.name.startswith("fraud_")}
    text = " ".join(_exprs(_dashboard()))
    uncharted = sorted(name for name in families if not re.search(rf"\b{name}", text))
    assert not uncharted, f"metrics without a panel: {uncharted}"


def test_the_issue_metric_names_are_exported() -> None:
    """The names operators and the docs rely on; renaming one breaks dashboards and alerts."""
    exported = _exported_names()
    for name in (
        "fraud_detector_transactions_total",
        "fraud_detector_processing_latency_seconds_bucket",
        "fraud_detector_consumer_lag",
        "fraud_detector_kafka_transactions_total",
        "fraud_detector_dead_letters_total",
        "fraud_detector_broker_reachable",
        "fraud_generator_transactions_total",
        "fraud_generator_delivery_failures_total",
        "fraud_generator_target_rate",
        "fraud_generator_broker_reachable",
    ):
        assert name in exported, name
