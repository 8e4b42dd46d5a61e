"""Running the Kafka image's compose commands on this machine, with the project's Kafka jars.

The apache/kafka image cannot be pulled everywhere the tests run. Its scripts under
/opt/kafka/bin are thin launchers of Kafka's own classes, which the project's jars (kafka/lib,
the same Kafka version as the image: tests/compose checks it) hold too. So a compose service's
command and healthcheck can run here: /opt/kafka/bin, /run/secrets, /tmp and the data dir are
mapped into a temporary directory, the service's bind mounts to their sources (kafka-init's
topics.txt), and the host name `broker` with its ports to local ports.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from tests.broker import BROKER_SCRIPT, free_port
from tests.compose.compose_files import REPO, environment_of

# The image's /opt/kafka/bin scripts, played by the project's jars.
IMAGE_TOOLS = {
    "kafka-storage.sh": "kafka.tools.StorageTool",
    "kafka-server-start.sh": "kafka.Kafka",
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-acls.sh": "org.apache.kafka.tools.AclCommand",
    "kafka-broker-api-versions.sh": "org.apache.kafka.tools.BrokerApiVersionsCommand",
}


class ComposeHost:
    """Runs compose services' commands on this machine: /run/secrets, /opt/kafka/bin, /tmp,
    host names and ports mapped to a temporary directory, local tools and local ports.

    `ports` maps each port of `broker` in the compose file to the local one (default: a free
    port for each of 9092, 29092 and 9093, for a broker started from the compose command)."""

    def __init__(
        self,
        root: Path,
        secrets: dict[str, Path] | None = None,
        ports: dict[int, int] | None = None,
    ) -> None:
        self.root = root
        self.ports = ports or {9092: free_port(), 29092: free_port(), 9093: free_port()}
        self.run_secrets = root / "run-secrets"
        self.run_secrets.mkdir()
        for name, source in (secrets or {}).items():
            shutil.copy(source, self.run_secrets / name)
        self.bin = root / "bin"
        self.bin.mkdir()
        lib = BROKER_SCRIPT.parent / "lib"
        for script, main_class in IMAGE_TOOLS.items():
            log_config = (
                "log4j2.properties"
                if script == "kafka-server-start.sh"
                else "tools-log4j2.properties"
            )
            shim = self.bin / script
            shim.write_text(
                "#!/usr/bin/env bash\n"
                f'exec "{BROKER_SCRIPT}" java -Xmx512m -Dkafka.logs.dir="{root}" '
                f'-Dlog4j2.configurationFile="{BROKER_SCRIPT.parent / log_config}" '
                f'-cp "{lib}/*" {main_class} "$@"\n'
            )
            shim.chmod(0o755)

    def text(self, value: str) -> str:
        value = re.sub(r"(?<![\w.-])/tmp/", f"{self.root}/tmp-", value)  # before adding paths
        value = value.replace("/run/secrets/", f"{self.run_secrets}/")
        value = value.replace("/opt/kafka/bin/", f"{self.bin}/")
        value = value.replace("/var/lib/kafka/data", str(self.root / "data"))
        value = re.sub(r"\bbroker:(?=\d)", "localhost:", value)
        for port in sorted(self.ports, reverse=True):
            value = re.sub(rf"(?<=:){port}\b", str(self.ports[port]), value)
        return value

    @staticmethod
    def mounted(service: dict[str, Any], value: str) -> str:
        """`value` with each bind mount's path in the container replaced by its source here."""
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):  # `docker compose config`: the long form
                if volume.get("type") != "bind":
                    continue
                source, target = str(volume["source"]), str(volume["target"])
            else:  # as written: SOURCE:TARGET[:MODE], a relative source from the repository
                source, _, rest = str(volume).partition(":")
                if not source.startswith((".", "/")):
                    continue  # a named volume
                target = rest.partition(":")[0]
                source = str((REPO / source).resolve())
            pattern = rf"(?<![\w.-]){re.escape(target)}(?![\w.-])"
            value = re.sub(pattern, source.replace("\\", "\\\\"), value)
        return value

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        """The service's environment (unset pass-through variables left out; no metrics port:
        the services here share one network namespace)."""
        base = {
            k: os.environ[k] for k in ("PATH", "HOME", "KAFKA_JAVA", "PYTHON") if k in os.environ
        }
        own = {
            k: self.mounted(service, self.text(str(v)))
            for k, v in environment_of(service).items()
            if v is not None and k != "METRICS_PORT"
        }
        return base | own

    def command(self, service: dict[str, Any]) -> list[str]:
        return [self.mounted(service, self.text(part)) for part in service["command"]]

    def healthcheck(self, service: dict[str, Any]) -> list[str]:
        """The service's healthcheck as a command line (exec form: its words after CMD)."""
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", f"expected an exec-form healthcheck, got {test}"
        return [self.text(part) for part in test[1:]]
