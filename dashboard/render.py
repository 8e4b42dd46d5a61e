"""Drawing one frame: a pure function of a DashboardView, so tests render it without Kafka."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dashboard.model import (
    DEAD_LETTER,
    FRAUD,
    INPUT,
    KNOWN_RULES,
    LEGIT,
    NO_RULES_HEADER,
    ROLES,
    DashboardView,
)
from dashboard.quality import Quality

ROLE_STYLE = {INPUT: "cyan", LEGIT: "green", FRAUD: "bold red", DEAD_LETTER: "yellow"}


def render(view: DashboardView, footer: str = "q or Ctrl-C quits") -> RenderableType:
    """The whole screen for one view; `footer` is the last line (none when empty)."""
    header = Text.assemble(
        ("fraud detection", "bold"),
        "  broker ",
        (view.broker, "bold"),
        "  group ",
        (view.group, "bold"),
        "  ",
        (view.updated_at, "dim"),
    )
    parts: list[RenderableType] = [header]
    if view.status:
        parts.append(Text(view.status, style="bold white on red"))
    parts += [
        _topics(view),
        _fraud_share(view),
        _fraud_by_rule(view),
        *([] if view.quality is None else [_quality(view.quality)]),
        _side_by_side(_dead_letters(view), _lag(view)),
        _latest_fraud(view),
    ]
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def _topics(view: DashboardView) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, title=None, pad_edge=False)
    table.add_column("stream")
    table.add_column("topic")
    table.add_column(f"tx/s ({view.window_seconds}s)", justify="right")
    table.add_column("read", justify="right")
    for role in ROLES:
        topic = view.topics.get(role, "")
        missing = topic in view.missing_topics
        table.add_row(
            Text(role, style=ROLE_STYLE[role]),
            Text(topic + (" (missing)" if missing else ""), style="dim" if missing else ""),
            f"{view.rates.get(role, 0.0):,.1f}",
            f"{view.totals.get(role, 0):,}",
        )
    return table


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def _fraud_share(view: DashboardView) -> Text:
    return Text.assemble(
        "fraud share ",
        (_percent(view.fraud_share_window), "bold red"),
        f" over the last {view.window_seconds}s, ",
        (_percent(view.fraud_share_total), "bold"),
        " of all legit + fraud read",
    )


def _rules_text(rules: str) -> Text:
    """A fraud.rules value; the ones no detector writes are dimmed."""
    return Text(rules, style="" if rules in KNOWN_RULES else "dim")


def _fraud_by_rule(view: DashboardView) -> Panel:
    table = Table(box=None, show_header=True, pad_edge=False)
    table.add_column("rules")
    table.add_column(f"tx/s ({view.window_seconds}s)", justify="right")
    table.add_column("read", justify="right")
    table.add_column("of fraud read", justify="right")
    for count in view.fraud_by_rule:
        table.add_row(
            _rules_text(count.rules),
            f"{count.rate:,.1f}",
            f"{count.total:,}",
            _percent(count.share),
        )
    return Panel(
        table,
        title="fraud by rule (fraud.rules header)",
        title_align="left",
        border_style=ROLE_STYLE[FRAUD],
        expand=False,
    )


def _quality(quality: Quality) -> Panel:
    """Precision and recall by rule against the sim.label header, and where each scenario went."""
    rules = Table(box=None, show_header=True, pad_edge=False)
    rules.add_column("rule")
    for name in ("alerts", "precision", "recall"):
        rules.add_column(name, justify="right")
    for rule in (*quality.rules, quality.total):
        rules.add_row(
            Text(rule.rule, style="bold" if rule is quality.total else ""),
            f"{rule.alerts:,}",
            _percent(rule.precision),
            _percent(rule.recall),
        )
    scenarios = Table(box=None, show_header=True, pad_edge=True)  # apart from the rules
    scenarios.add_column("scenario")
    for name in ("labelled", "caught", "missed"):
        scenarios.add_column(name, justify="right")
    for scenario in quality.scenarios:
        scenarios.add_row(
            Text(scenario.scenario),
            f"{scenario.labelled:,}",
            f"{scenario.caught:,}",
            f"{scenario.missed:,}",
        )
    return Panel(
        _side_by_side(rules, scenarios),
        title="quality since start (sim.label header)",
        title_align="left",
        border_style="magenta",
        expand=False,
    )


def _dead_letters(view: DashboardView) -> Panel:
    table = Table(box=None, show_header=True, pad_edge=False)
    table.add_column("reason")
    table.add_column("count", justify="right")
    for reason, count in view.dead_letters:
        table.add_row(reason, f"{count:,}")
    if not view.dead_letters:
        table.add_row(Text("none", style="dim"), "0")
    return Panel(
        table,
        title=f"dead letters: {view.dead_letters_total:,}",
        title_align="left",
        border_style=ROLE_STYLE[DEAD_LETTER],
    )


def _lag(view: DashboardView) -> Panel:
    table = Table(box=None, show_header=True, pad_edge=False)
    table.add_column("partition", justify="right")
    table.add_column("end", justify="right")
    table.add_column("committed", justify="right")
    table.add_column("lag", justify="right")
    for part in view.lag:
        committed = "none" if part.committed is None else f"{part.committed:,}"
        table.add_row(str(part.partition), f"{part.end_offset:,}", committed, f"{part.lag:,}")
    body: RenderableType = table
    if view.lag_error:
        body = Group(table, Text(view.lag_error, style="red"))
    elif not view.lag:
        body = Text("no partitions yet", style="dim")
    return Panel(
        body,
        title=f"consumer lag of {view.group}: {view.lag_total:,}",
        title_align="left",
        border_style="blue",
    )


def _side_by_side(left: RenderableType, right: RenderableType) -> Table:
    grid = Table.grid(padding=(0, 1), expand=False)
    grid.add_column()
    grid.add_column()
    grid.add_row(left, right)
    return grid


def _latest_fraud(view: DashboardView) -> Panel:
    table = Table(box=None, show_header=True, pad_edge=False)
    # Only the id gives way on a narrow screen (an ellipsis at its end): at 100 columns, with
    # "amount,velocity" and "1,000.00 EUR" on screen, it loses its last two characters.
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("rules", no_wrap=True)
    table.add_column("id", overflow="ellipsis", no_wrap=True, max_width=36)
    for row in view.latest_fraud:
        rules = Text("-", style="dim") if row.rules == NO_RULES_HEADER else _rules_text(row.rules)
        table.add_row(
            row.timestamp,
            row.source,
            row.target,
            f"{row.amount} {row.currency}".strip(),
            rules,
            row.id,
        )
    body: RenderableType = table if view.latest_fraud else Text("none yet", style="dim")
    return Panel(body, title="latest fraud", title_align="left", border_style=ROLE_STYLE[FRAUD])
