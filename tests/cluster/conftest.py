"""The cluster tier: a three-node KRaft cluster from the jars (devtools.broker.JarCluster), its
brokers killed and stopped while the services run. Only under `make test-cluster` (tests/conftest.py
skips the marker `cluster` elsewhere: three JVMs and minutes of failovers are too heavy for
`make test`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import JarCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JarCluster]:
    root: Path = tmp_path_factory.mktemp("cluster")
    with JarCluster(root / "data", nodes=3, log=root / "broker.log") as running:
        yield running


@pytest.fixture
def cluster_bootstrap(cluster: JarCluster) -> str:
    cluster.start()  # a test that failed half-way may have left a node down
    return cluster.bootstrap
