"""Terminal and chat renderings of an analytics report. Formatting only: no numbers computed here.

``rich`` tables for the terminal; a compact plain-text form for chat (the ``/telemetry``
slash command). Unknown values print as ``—`` (not captured), never as 0.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

NA = "—"


def ms(value: float | None) -> str:
    """A duration in ms, readable: 812 ms, 1.53 s, 2.1 min."""
    if value is None:
        return NA
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 120_000:
        return f"{value / 1000:.2f} s"
    return f"{value / 60_000:.1f} min"


def pct(r: dict[str, Any] | None) -> str:
    """A rate with its 95% interval and sample size: 92% (85–96%, n=40)."""
    if not r or r.get("value") is None:
        return NA
    return f"{r['value'] * 100:.0f}% ({r['ci95_low'] * 100:.0f}–{r['ci95_high'] * 100:.0f}%, n={r['n']})"


def pct_short(r: dict[str, Any] | None) -> str:
    """A rate and its sample size, for narrow tables: 67% n=3."""
    if not r or r.get("value") is None:
        return NA
    return f"{r['value'] * 100:.0f}% n={r['n']}"


def cost_short(cost: dict[str, Any]) -> str:
    """Known cost for narrow tables; '?' marks calls that could not be priced."""
    known = cost.get("known_usd")
    unknown = cost.get("calls", {}).get("unknown", 0)
    if known is None:
        return "unknown" if unknown else NA
    return f"{usd(known)}{' +?' if unknown else ''}"


def count(value: int | None) -> str:
    return NA if value is None else f"{value:,}"


def usd(value: float | None) -> str:
    try:
        from hermetry.cost import format_usd

        return format_usd(value)
    except Exception:  # pragma: no cover - cost package absent
        return NA if value is None else f"${value:.6g}"


def cost_line(cost: dict[str, Any]) -> str:
    """"$12.40 actual + ≥ $3.10 estimated; 41 calls unpriced" — unknown never becomes $0."""
    parts = []
    calls = cost.get("calls", {})
    if cost.get("actual_usd") is not None:
        parts.append(f"{usd(cost['actual_usd'])} actual")
    if cost.get("estimated_usd") is not None:
        parts.append(f"{usd(cost['estimated_usd'])} estimated")
    text = " + ".join(parts) if parts else "unknown"
    extras = []
    if calls.get("included"):
        extras.append(f"{calls['included']} calls included in a subscription")
    if calls.get("unknown"):
        extras.append(f"{calls['unknown']} calls unpriced")
    if extras:
        if parts:
            text = "≥ " + text
        text += "; " + ", ".join(extras)
    return text


def _dist_row(name: str, d: dict[str, Any]) -> list[str]:
    cov = d["coverage"]
    return [name, ms(d["avg"]), ms(d["p50"]), ms(d["p95"]), ms(d["p99"]), ms(d["max"]), f"{cov['captured']}/{cov['of']}"]


def report_renderable(report: dict[str, Any]) -> Group:
    """The insights report as rich tables."""
    cov, turns, api = report["coverage"], report["turns"], report["api_calls"]
    w = report["window"]
    head = Text.assemble(
        ("hermetry insights", "bold"),
        f"  {w['since']} → {w['until']}\n",
        f"{cov['sessions']} sessions · {cov['turns']} turns · {cov['api_calls']} API calls · "
        f"{cov['tool_calls']} tool calls",
        (f" · {cov['events_dropped']} events dropped" if cov["events_dropped"] else ""),
    )

    outcomes = Table(title="Turns", title_justify="left", show_edge=False)
    outcomes.add_column("outcome")
    outcomes.add_column("turns", justify="right")
    for name, n in turns["by_outcome"].items():
        outcomes.add_row(name, count(n))
    outcomes.add_row("completion rate", pct(turns["completion_rate"]))
    outcomes.add_row("failure rate", pct(turns["failure_rate"]))

    lat = Table(title="Latency", title_justify="left", show_edge=False)
    for col in ("", "avg", "p50", "p95", "p99", "max", "captured"):
        lat.add_column(col, justify="left" if not col else "right")
    lat.add_row(*_dist_row("turn wall time", turns["wall_ms"]))
    lat.add_row(*_dist_row("API call", api["latency_ms"]))
    lat.add_row(*_dist_row("time to first token", api["ttft_ms"]))
    lat.add_row(*_dist_row("tool call", report["tool_calls"]["latency_ms"]))
    if turns["queue_wait_ms"]["count"]:
        lat.add_row(*_dist_row("queue wait", turns["queue_wait_ms"]))

    tok = api["tokens"]
    tokens = Table(title="Tokens and cost", title_justify="left", show_edge=False)
    tokens.add_column("")
    tokens.add_column("total", justify="right")
    for kind in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens", "total_tokens"):
        label = kind.replace("_tokens", "").replace("_", " ")
        if kind == "reasoning_tokens":
            label = "  of which reasoning"
        tokens.add_row(label, count(tok[kind]))
    tokens.add_row("usage captured", f"{tok['coverage']['captured']}/{tok['coverage']['of']} calls")
    tokens.add_row("API errors", f"{api['errors']} of {api['count']}")
    tokens.add_row("cost", cost_line(api["cost"]))

    parts: list[Any] = [head, outcomes, lat, tokens]
    if report["tools"]:
        tools = Table(title="Tools", title_justify="left", show_edge=False)
        for col in ("tool", "toolset", "calls", "failed", "p50", "p95"):
            tools.add_column(col, justify="right" if col in ("calls", "failed", "p50", "p95") else "left")
        for t in report["tools"]:
            tools.add_row(t["tool_name"], t["toolset"] or NA, count(t["calls"]), count(t["failures"]),
                          ms(t["latency_ms"]["p50"]), ms(t["latency_ms"]["p95"]))
        parts.append(tools)
    for dim, rows in report["breakdowns"].items():
        b = Table(title=f"By {dim.replace('_', ' ')}", title_justify="left", show_edge=False)
        for col in (dim, "sessions", "turns", "completed", "turn p50", "turn p95", "API p95", "TTFT p50", "tokens", "cost"):
            b.add_column(col, justify="left" if col == dim else "right", no_wrap=col != dim, min_width=14 if col == dim else None)
        for row in rows:
            t, a = row["turns"], row["api_calls"]
            b.add_row(
                row[dim], count(row["sessions"]), count(t["count"]), pct_short(t["completion_rate"]),
                ms(t["wall_ms"]["p50"]), ms(t["wall_ms"]["p95"]), ms(a["latency_ms"]["p95"]),
                ms(a["ttft_ms"]["p50"]), count(a["tokens"]["total_tokens"]), cost_short(a["cost"]),
            )
        parts.append(b)
    return Group(*[p for part in parts for p in (part, Text(""))])


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(report_renderable(report))


def chat_text(report: dict[str, Any]) -> str:
    """A compact, plain-text report for a chat message (Telegram, Discord, Slack, the CLI)."""
    cov, turns, api = report["coverage"], report["turns"], report["api_calls"]
    lines = [
        f"hermetry — last {report['window']['days']:g} days",
        f"{cov['sessions']} sessions, {cov['turns']} turns, {cov['api_calls']} API calls",
        f"completed: {pct(turns['completion_rate'])}",
        f"failed: {pct(turns['failure_rate'])}",
        f"turn time p50/p95: {ms(turns['wall_ms']['p50'])} / {ms(turns['wall_ms']['p95'])}",
        f"API p50/p95: {ms(api['latency_ms']['p50'])} / {ms(api['latency_ms']['p95'])}",
        f"TTFT p50: {ms(api['ttft_ms']['p50'])} ({api['ttft_ms']['coverage']['captured']}/{api['ttft_ms']['coverage']['of']} calls)",
        f"tokens: {count(api['tokens']['total_tokens'])} (in {count(api['tokens']['input_tokens'])}, "
        f"cache {count(api['tokens']['cache_read_tokens'])}, out {count(api['tokens']['output_tokens'])})",
        f"cost: {cost_line(api['cost'])}",
    ]
    for dim, rows in report["breakdowns"].items():
        lines.append(f"by {dim}:")
        for row in rows:
            t = row["turns"]
            lines.append(f"  {row[dim]}: {t['count']} turns, {pct(t['completion_rate'])}, p95 {ms(t['wall_ms']['p95'])}")
    return "\n".join(lines)
