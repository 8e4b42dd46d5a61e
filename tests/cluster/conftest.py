"""The cluster tier: a three-node KRaft cluster from the jars (devtools.broker.JarCluster), its
brokers killed and stopped while the services run. `make test-cluster` runs it and says so with
FRAUD_CLUSTER_TIER=1; elsewhere its tests are skipped with that reason (three JVMs and minutes of
failovers are too heavy for `make test`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import JarCluster

CLUSTER_TIER_SKIP = "the cluster tier (three brokers, killed) runs with `make test-cluster`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FRAUD_CLUSTER_TIER") == "1":
        return
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(pytest.mark.skip(reason=CLUSTER_TIER_SKIP))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JarCluster]:
    root: Path = tmp_path_factory.mktemp("cluster")
    with JarCluster(root / "data", nodes=3, log=root / "broker.log") as running:
        yield running


@pytest.fixture
def cluster_bootstrap(cluster: JarCluster) -> str:
    cluster.start()  # a test that failed half-way may have left a node down
    return cluster.bootstrap
