"""How big each measurement is: the full run, the quick run, and a scale knob for tests."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

FULL = "full"
QUICK = "quick"


@dataclass(frozen=True)
class BenchConfig:
    mode: str
    scale: float
    # 1. generator: achieved vs target rate, each run this long
    generator_rates: tuple[float, ...]
    generator_seconds: float
    # Unthrottled generator and raw producer send this many; the raw producer's records are the
    # preloaded input of 2. the detector and 3. the raw pipe and the naive detector.
    records: int
    # 2./3. each consuming process runs this often (interleaved); the best run counts
    repeats: int
    # 3. Kafka's own ProducerPerformance / ConsumerPerformance
    perf_records: int
    # 4. end-to-end latency: the generator runs this long at each rate, in each guarantee
    latency_rates: tuple[int, ...]
    latency_seconds: float
    latency_warmup_seconds: float
    # 2. the reference rows (bench/reference.py: Quix Streams, confluent-kafka), which need the
    # venv that `make bench` installs bench/requirements.txt into: full runs only by default
    reference: bool = True
    # 6. the velocity rule's state (bench/velocity_bench.py): a stream of this many records per
    # second of stream time over this many accounts, this long, through a window of this size
    velocity_rate: int = 5000
    velocity_stream_seconds: float = 180.0
    velocity_accounts: int = 100_000
    velocity_window_seconds: float = 60.0
    # 9. the hot path's stages (bench/hot_path.py), timed in-process over this many records
    hot_path_records: int = 50_000
    partitions: int = 3
    seed: int = 20_261_129

    @classmethod
    def create(cls, quick: bool, scale: float = 1.0, reference: bool | None = None) -> BenchConfig:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")

        def count(n: int, floor: int) -> int:
            return max(floor, round(n * scale))

        def seconds(s: float, floor: float) -> float:
            return max(floor, round(s * scale, 2))

        if quick:
            return cls(
                mode=QUICK,
                scale=scale,
                generator_rates=(100, 1000, 10_000),
                generator_seconds=seconds(3, 1),
                records=count(30_000, 2000),
                repeats=1,
                perf_records=count(150_000, 20_000),
                latency_rates=(1000, 5000),
                latency_seconds=seconds(4, 1.5),
                latency_warmup_seconds=seconds(1, 0.25),
                reference=bool(reference),
                velocity_stream_seconds=seconds(24, 3),
                velocity_accounts=20_000,
                velocity_window_seconds=6.0,
                hot_path_records=count(20_000, 2000),
            )
        return cls(
            mode=FULL,
            scale=scale,
            generator_rates=(100, 1000, 10_000),
            generator_seconds=seconds(15, 1),
            records=count(200_000, 2000),
            repeats=2,
            perf_records=count(2_000_000, 20_000),
            latency_rates=(1000, 5000),
            latency_seconds=seconds(20, 1.5),
            latency_warmup_seconds=seconds(1, 0.25),
            reference=reference is None or reference,
        )

    @classmethod
    def from_env(
        cls, quick: bool | None = None, scale: float | None = None, reference: bool | None = None
    ) -> BenchConfig:
        """BENCH_QUICK=1 and BENCH_SCALE=<factor> apply unless the command line says otherwise;
        `reference` None: the mode's default."""
        if quick is None:
            quick = os.environ.get("BENCH_QUICK", "").strip().lower() in ("1", "true", "yes")
        if scale is None:
            scale = float(os.environ.get("BENCH_SCALE", "") or 1.0)
        return cls.create(quick, scale, reference)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
