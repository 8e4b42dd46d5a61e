"""The run's PNG chart: throughput, end-to-end latency and generator pacing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import THROUGHPUT_ROWS, _reference_row
from bench.targets import P99_MS
from bench.targets import get as _get


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (only the report needs it; Agg: no display)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_tp, ax_lat, ax_gen) = plt.subplots(
        1, 3, figsize=(17, 5.5), gridspec_kw={"width_ratios": [1.5, 1.2, 0.8]}
    )
    meta = results["meta"]
    fig.suptitle(
        f"fraud detection stack, {meta['mode']} bench, {meta['machine']['nproc']} CPUs, "
        f"{meta['started_at']}"
    )

    labels, rates = [], []
    for label, path_, _ in THROUGHPUT_ROWS:
        rate = _get(results, *path_, "rate")
        if rate is not None:
            labels.append(label)
            rates.append(rate)
    reference = {label for label, _, note in THROUGHPUT_ROWS if note is _reference_row}
    colors = [
        "tab:blue"
        if label.startswith("detector")
        else ("tab:orange" if label in reference else "tab:gray")
        for label in labels
    ]
    bars = ax_tp.barh(labels, rates, color=colors)
    ax_tp.set_xscale("log")
    ax_tp.invert_yaxis()
    ax_tp.set_xlabel("records per second (log scale)")
    ax_tp.set_title("throughput")
    ax_tp.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], padding=3, fontsize=8)
    ax_tp.set_xlim(right=max(rates, default=1) * 8)

    latency = results.get("latency") or {}
    groups = [
        (c, g, r) for c, by_g in latency.items() for g, by_rate in by_g.items() for r in by_rate
    ]
    width = 0.25
    for i, pct in enumerate(("p50", "p95", "p99")):
        values = [latency[c][g][r]["latency_ms"][pct] for c, g, r in groups]
        xs = [j + (i - 1) * width for j in range(len(groups))]
        ax_lat.bar(xs, values, width, label=pct)
    ax_lat.set_xticks(range(len(groups)))
    ax_lat.set_xticklabels(
        [f"{c}\n{g}\n{int(r):,}/s" for c, g, r in groups], fontsize=6, rotation=90
    )
    ax_lat.set_ylabel("ms")
    ax_lat.set_yscale("log")
    for (guarantee, ms), color in zip(P99_MS.items(), ("tab:green", "tab:red"), strict=True):
        ax_lat.axhline(ms, color=color, linestyle="--", linewidth=1, label=f"p99 {guarantee}")
    ax_lat.set_title("end-to-end latency")
    ax_lat.legend(fontsize=8)

    paced = _get(results, "generator", "paced") or []
    ratios = [p["ratio"] for p in paced]
    bars = ax_gen.bar([f"{p['target_rate']:,.0f}/s" for p in paced], ratios, color="tab:blue")
    ax_gen.bar_label(bars, labels=[f"{r:.3f}" for r in ratios], padding=2, fontsize=8)
    ax_gen.axhspan(0.99, 1.01, color="tab:green", alpha=0.2, label="within 1%")
    ax_gen.set_ylim(min([0.95, *ratios]) - 0.02, max([1.03, *ratios]) + 0.02)
    ax_gen.set_ylabel("achieved / target")
    ax_gen.set_title("generator pacing")
    ax_gen.legend(fontsize=8)

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
