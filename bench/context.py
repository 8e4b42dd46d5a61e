"""What every measurement needs: the broker, the sizes, where logs go, unique names."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from bench.config import BenchConfig
from bench.kafka_ops import run_tag
from bench.procs import Process, service_env
from bench.reference import reference_python
from fraudcore.config import CommonSettings, KafkaClient

log = logging.getLogger("bench")

# Every client the services can run on (KAFKA_CLIENT); the bench measures each.
CLIENTS: tuple[str, ...] = get_args(KafkaClient)


def environment_client() -> str:
    """The client KAFKA_CLIENT chooses for the bench's own environment (the generator section
    and the raw producer run on it): the services' setting, validated as they validate it."""
    return CommonSettings().kafka_client


@dataclass
class Context:
    bootstrap: str
    config: BenchConfig
    logs: Path
    tag: str = field(default_factory=run_tag)
    _counter: int = 0

    def name(self, kind: str) -> str:
        """A topic or group name used by nothing else in this run (nor in an earlier one)."""
        self._counter += 1
        return f"bench.{self.tag}.{self._counter:02d}.{kind}"

    def service(self, module: str, label: str, env: dict[str, str]) -> Process:
        """python -m generator|detector with the bench broker and `env`.

        BENCH_DETECTOR_MODULE / BENCH_GENERATOR_MODULE run a variant instead (a module on
        PYTHONPATH), so that a proposed change can be measured exactly as the service is.
        """
        module = os.environ.get(f"BENCH_{module.upper()}_MODULE") or module
        full = service_env({"KAFKA_BROKER_URL": self.bootstrap, **env})
        return Process.python_module(module, [], full, self.logs / f"{label}.log")

    def baseline(
        self, kind: str, label: str, args: list[str], env: dict[str, str] | None = None
    ) -> Process:
        """python -m bench.baselines `kind`; `env` over the bench's own (KAFKA_CLIENT, say)."""
        return Process.python_module(
            "bench.baselines",
            [kind, "--bootstrap", self.bootstrap, *args],
            service_env(env or {}),
            self.logs / f"{label}.log",
        )

    def reference(self, kind: str, label: str, args: list[str]) -> Process:
        """python -m bench.reference `kind` with the reference venv's interpreter."""
        return Process(
            [
                str(reference_python()),
                "-m",
                "bench.reference",
                kind,
                "--bootstrap",
                self.bootstrap,
                *args,
            ],
            service_env({}),
            self.logs / f"{label}.log",
        )


def best(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run (the one least disturbed by other load), with every run's rate, and every
    run's CPU per record and the highest peak RSS where the runs measured those."""
    top = max(samples, key=lambda s: s["rate"])
    result = {**top, "runs": [s["rate"] for s in samples]}
    if "cpu_us_per_record" in top:
        result["cpu_us_per_record_runs"] = [s["cpu_us_per_record"] for s in samples]
    if "peak_rss_mb" in top:
        result["peak_rss_mb"] = max((s["peak_rss_mb"] or 0.0) for s in samples)
    return result
