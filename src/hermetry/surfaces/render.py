"""Terminal and chat renderings of analytics results. Formatting only: no numbers computed here.

``rich`` tables (with small inline charts: sparklines of per-day counts, a histogram of turn
wall time, a waterfall per turn) for the terminal; a compact plain-text form for chat (the
``/telemetry`` slash command). Unknown values print as ``—`` (not captured), never as 0.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

NA = "—"
SPARK = "▁▂▃▄▅▆▇█"


# ---------------------------------------------------------------------------------------------
# Small formatters
# ---------------------------------------------------------------------------------------------

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


def count(value: int | float | None) -> str:
    return NA if value is None else f"{value:,.0f}"


def usd(value: float | None) -> str:
    try:
        from hermetry.cost import format_usd

        return format_usd(value) if value is not None else NA
    except Exception:  # pragma: no cover - cost package absent
        return NA if value is None else f"${value:.6g}"


def cost_short(cost: dict[str, Any]) -> str:
    """Known cost for narrow tables; '+?' marks calls that could not be priced."""
    known = cost.get("known_usd")
    unknown = cost.get("calls", {}).get("unknown", 0)
    if known is None:
        return "unknown" if unknown else NA
    return f"{usd(known)}{' +?' if unknown else ''}"


def cost_line(cost: dict[str, Any]) -> str:
    """"$12.40 actual + $3.10 estimated; 41 calls unpriced" — unknown never becomes $0."""
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
    if not parts and not extras:
        text = NA
    return text


def covered(d: dict[str, Any], noun: str = "calls") -> str:
    """"14/22 calls · 9/12 sessions": how much of the data a figure covers."""
    cov = d.get("coverage") or {}
    text = f"{cov.get('captured', 0)}/{cov.get('of', 0)} {noun}"
    sessions = d.get("session_coverage")
    if sessions:
        text += f" · {sessions['captured']}/{sessions['of']} sessions"
    return text


def sparkline(values: list[float | None]) -> str:
    """One block per value, scaled to the largest; a gap for a value that was not captured."""
    known = [v for v in values if v is not None]
    top = max(known) if known else 0
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif top <= 0 or v <= 0:
            out.append(SPARK[0] if v == 0 else " ")
        else:
            out.append(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def bar(n: float, top: float, width: int = 30) -> str:
    if top <= 0 or n <= 0:
        return ""
    return "█" * max(1, round(n / top * width))


def _table(title: str | None = None, *, compact: bool = False) -> Table:
    if compact:  # no rules: for wide listings
        return Table(title=title, title_justify="left", box=None, pad_edge=False, padding=(0, 2, 0, 0),
                     header_style="bold underline",
                     title_style="bold")
    return Table(title=title, title_justify="left", show_edge=False, pad_edge=False)


def _spaced(parts: list[RenderableType]) -> Group:
    return Group(*[p for part in parts for p in (part, Text(""))])


# ---------------------------------------------------------------------------------------------
# insights
# ---------------------------------------------------------------------------------------------

def _dist_row(name: str, d: dict[str, Any], noun: str = "calls") -> list[str]:
    return [name, ms(d["avg"]), ms(d["p50"]), ms(d["p95"]), ms(d["p99"]), ms(d["max"]), covered(d, noun)]


def _edge_label(edges: list[float], i: int) -> str:
    lo = ms(edges[i]) if edges[i] else "0"
    return f"≥ {lo}" if i + 1 == len(edges) else f"{lo} – {ms(edges[i + 1])}"


def _histogram(h: dict[str, Any]) -> Table | None:
    counts, edges = h["counts"], h["edges_ms"]
    if not any(counts):
        return None
    last = max(i for i, n in enumerate(counts) if n)
    top = max(counts)
    table = _table("Turn wall time")
    table.add_column("", justify="right")
    table.add_column("turns", justify="right")
    table.add_column("")
    for i in range(last + 1):
        table.add_row(_edge_label(edges, i), count(counts[i]), bar(counts[i], top))
    return table


def _breakdown_table(dim: str, rows: list[dict[str, Any]]) -> Table:
    b = _table(f"By {dim.replace('_', ' ')}")
    if dim in ("tool", "toolset"):
        for col in (dim, "calls", "failed", "p50", "p95"):
            b.add_column(col, justify="left" if col == dim else "right")
        for row in rows:
            t = row["tool_calls"]
            b.add_row(row[dim] or NA, count(t["count"]), pct_short(t["failure_rate"]),
                      ms(t["latency_ms"]["p50"]), ms(t["latency_ms"]["p95"]))
        return b
    for col in (dim, "sessions", "turns", "completed", "turn p95", "API p95", "TTFT p50", "tokens", "cost"):
        b.add_column(col, justify="left" if col == dim else "right", no_wrap=True)
    for row in rows:
        t, a = row["turns"], row["api_calls"]
        b.add_row(row[dim] or NA, count(row["sessions"]), count(t["count"]), pct_short(t["completion_rate"]),
                  ms(t["wall_ms"]["p95"]), ms(a["latency_ms"]["p95"]), ms(a["ttft_ms"]["p50"]),
                  count(a["tokens"]["total_tokens"]), cost_short(a["cost"]))
    return b


def report_renderable(report: dict[str, Any]) -> Group:
    """The insights report (``hermetry.insights.v1``) as rich tables and small charts."""
    cov, turns, api = report["coverage"], report["turns"], report["api_calls"]
    w = report["window"]
    head = Text.assemble(
        ("hermetry insights", "bold"),
        f"  {w['since']} → {w['until']}",
        (f"  filters: {', '.join(f'{k}={v}' for k, v in report['filters'].items())}" if report["filters"] else ""),
        "\n",
        f"{cov['sessions']} sessions · {cov['turns']} turns · {cov['api_calls']} API calls · "
        f"{cov['tool_calls']} tool calls",
        (f"\n{cov['events_dropped']} events were dropped by the recorder (not in these figures)", "yellow")
        if cov["events_dropped"] else "",
    )
    parts: list[RenderableType] = [head]
    daily = report.get("daily") or []
    if len(daily) > 1:
        activity = _table("Per day")
        activity.add_column("")
        activity.add_column(f"{daily[0]['day']} → {daily[-1]['day']}", no_wrap=True)
        activity.add_column("max", justify="right")
        for key, label in (("turns", "turns"), ("turn_failures", "failed turns"), ("api_calls", "API calls"),
                           ("total_tokens", "tokens")):
            series = [d[key] for d in daily]
            known = [v for v in series if v is not None]
            activity.add_row(label, sparkline(series), count(max(known)) if known else NA)
        by_day = {row["day"]: row for row in report["breakdowns"].get("day", [])}
        if by_day:  # latency per day, when the report was broken down by day
            for label, pick in (("turn p95", lambda r: r["turns"]["wall_ms"]["p95"]),
                                ("API p95", lambda r: r["api_calls"]["latency_ms"]["p95"])):
                series = [pick(by_day[d["day"]]) if d["day"] in by_day else None for d in daily]
                known = [v for v in series if v is not None]
                activity.add_row(label, sparkline(series), ms(max(known)) if known else NA)
        parts.append(activity)

    outcomes = _table("Turns")
    outcomes.add_column("outcome")
    outcomes.add_column("turns", justify="right")
    for name, n in turns["by_outcome"].items():
        outcomes.add_row(name, count(n))
    outcomes.add_row("completion rate", pct(turns["completion_rate"]))
    outcomes.add_row("failure rate", pct(turns["failure_rate"]))
    parts.append(outcomes)
    sessions = report.get("sessions")
    if sessions and sessions["count"]:
        parts.append(Text(f"Sessions started in the window: {sessions['count']} — "
                          + ", ".join(f"{k} {v}" for k, v in sessions["by_outcome"].items())))

    lat = _table("Latency")
    for col in ("", "avg", "p50", "p95", "p99", "max", "captured"):
        lat.add_column(col, justify="left" if col in ("", "captured") else "right", no_wrap=True)
    lat.add_row(*_dist_row("turn wall time", turns["wall_ms"], "turns"))
    lat.add_row(*_dist_row("API call", api["latency_ms"]))
    lat.add_row(*_dist_row("time to first token", api["ttft_ms"]))
    lat.add_row(*_dist_row("tool call", report["tool_calls"]["latency_ms"]))
    if turns["queue_wait_ms"]["count"]:
        lat.add_row(*_dist_row("queue wait", turns["queue_wait_ms"], "turns"))
    parts.append(lat)
    histogram = _histogram(turns["wall_ms_histogram"])
    if histogram is not None:
        parts.append(histogram)

    tok = api["tokens"]
    tokens = _table("Tokens and cost")
    tokens.add_column("")
    tokens.add_column("total", justify="right")
    for kind in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
                 "total_tokens"):
        label = "  of which reasoning" if kind == "reasoning_tokens" else kind.replace("_tokens", "").replace("_", " ")
        tokens.add_row(label, count(tok[kind]))
    tokens.add_row("usage captured", covered(tok))
    tokens.add_row("API errors", f"{api['errors']} of {api['count']}"
                   + (f" ({', '.join(f'{k} {v}' for k, v in api['error_types'].items())})" if api["errors"] else ""))
    tokens.add_row("cost", cost_line(api["cost"]))
    tokens.add_row("cost captured", covered(api["cost"]))
    parts.append(tokens)
    conv = report.get("conversations")
    if conv and conv["count"]:
        conversations = _table(f"Conversations: {conv['count']} ({conv['subagent_sessions']} subagent and "
                               f"{conv['continuation_sessions']} continuation sessions rolled up)")
        for col in ("per conversation", "avg", "p50", "p95", "max", "captured"):
            conversations.add_column(col, justify="left" if col in ("per conversation", "captured") else "right",
                                     no_wrap=True)
        for key, label, fmt in (("turns_per_conversation", "turns", count),
                                ("api_calls_per_conversation", "API calls", count),
                                ("tokens_per_conversation", "tokens", count),
                                ("cost_usd_per_conversation", "cost", usd)):
            d = conv[key]
            conversations.add_row(label, fmt(d["avg"]), fmt(d["p50"]), fmt(d["p95"]), fmt(d["max"]),
                                  covered(d, "conversations"))
        parts.append(conversations)

    if report["tools"]:
        tools = _table("Tools")
        for col in ("tool", "toolset", "calls", "failed", "p50", "p95"):
            tools.add_column(col, justify="left" if col in ("tool", "toolset") else "right", no_wrap=True)
        for t in report["tools"]:
            tools.add_row(t["tool_name"], t["toolset"] or NA, count(t["calls"]), pct_short(t["failure_rate"]),
                          ms(t["latency_ms"]["p50"]), ms(t["latency_ms"]["p95"]))
        parts.append(tools)
    for dim, rows in report["breakdowns"].items():
        parts.append(_breakdown_table(dim, rows))
    return _spaced(parts)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(report_renderable(report))


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------

_VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "no significant change": "",
                  "insufficient data": "dim"}


def _metric_value(m: dict[str, Any], value: float | None) -> str:
    if m["unit"] == "ms":
        return ms(value)
    if m["unit"] == "USD":
        return usd(value)
    return NA if value is None else f"{value * 100:.1f}%"


def compare_renderable(result: dict[str, Any]) -> Group:
    a, b = result["baseline"], result["current"]
    head = Text.assemble(
        ("hermetry compare", "bold"),
        f"\nbaseline  {a['since']} → {a['until']}  ({a['coverage']['turns']} turns, {a['coverage']['api_calls']} API calls)",
        f"\ncurrent   {b['since']} → {b['until']}  ({b['coverage']['turns']} turns, {b['coverage']['api_calls']} API calls)",
    )
    table = _table()
    for col in ("metric", "baseline", "current", "change", "p", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right", no_wrap=True)
    for m in result["metrics"]:
        change = m.get("relative_change")
        table.add_row(
            m["metric"], _metric_value(m, m["baseline"]), _metric_value(m, m["current"]),
            NA if change is None else f"{change * 100:+.0f}%",
            NA if m.get("p_value") is None else f"{m['p_value']:.2g}",
            Text(m["verdict"], style=_VERDICT_STYLE.get(m["verdict"], "")),
        )
    method = result["method"]
    foot = Text(
        f"Flagged when p < {method['alpha']} and the change is ≥ {method['min_relative_change'] * 100:.0f}% "
        f"(≥ {method['min_rate_change'] * 100:.0f} point for rates). Tests: docs/cli.md#compare", style="dim")
    verdict = (Text(f"Regressions: {', '.join(result['regressions'])}", style="bold red") if result["regressions"]
               else Text("No regressions.", style="green"))
    return _spaced([head, table, verdict, foot])


def print_compare(result: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(compare_renderable(result))


# ---------------------------------------------------------------------------------------------
# sessions and one session
# ---------------------------------------------------------------------------------------------

def _short_time(iso_text: str | None) -> str:
    """2025-01-31T14:05:09+00:00 → 01-31 14:05 (UTC)."""
    return NA if not iso_text else iso_text[5:16].replace("T", " ")


def sessions_renderable(result: dict[str, Any]) -> Group:
    w = result["window"]
    shown = len(result["sessions"])
    what = "conversations" if result["rolled_up"] else "sessions"
    head = Text.assemble(("hermetry sessions", "bold"), f"  {w['since']} → {w['until']}\n",
                         f"{shown} of {result['count']} {what}, newest first")
    table = _table(compact=True)
    table.add_column("started", no_wrap=True)
    table.add_column("session", no_wrap=True, max_width=20)  # a long id is cut: any unique prefix works with `show`
    table.add_column("+", no_wrap=True)
    for col in ("source", "outcome", "turns", "calls", "tokens", "cost", "took"):
        table.add_column(col, justify="left" if col in ("source", "outcome") else "right", no_wrap=True)
    rolled = False
    for s in result["sessions"]:
        calls = count(s["api_calls"]) + (f" ({s['api_errors']}✗)" if s["api_errors"] else "")
        extra = s.get("sessions_in_conversation", 1) - 1
        rolled = rolled or extra > 0
        table.add_row(_short_time(s["started_at"]), s["session_id"], f"+{extra}" if extra else "",
                      s.get("source") or NA, s.get("outcome") or NA, count(s["turns"]), calls,
                      count(s["tokens"]["total_tokens"]), cost_short(s["cost"]), ms(s.get("duration_ms")))
    parts: list[RenderableType] = [head, table]
    if rolled:
        parts.append(Text("+N: subagent/continuation sessions rolled into the conversation; "
                          "(N✗): failed API calls", style="dim"))
    return _spaced(parts)


def print_sessions(result: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(sessions_renderable(result))


WATERFALL_WIDTH = 32


def _span(offset: float | None, duration: float | None, wall: float, width: int = WATERFALL_WIDTH) -> str:
    if offset is None or duration is None or wall <= 0:
        return " " * width
    start = min(width - 1, max(0, int(offset / wall * width)))
    end = min(width, max(start + 1, round((offset + duration) / wall * width)))
    return " " * start + "█" * (end - start) + " " * (width - end)


def _stacked(w: dict[str, Any], width: int = WATERFALL_WIDTH) -> Text:
    """model ███ tools ▓▓▓ other ░░░, proportional to the wall time."""
    wall = w.get("wall_ms") or 0
    text = Text()
    if wall <= 0:
        return text
    model = (w["model_ms"] or 0) - (w["overlap_ms"] or 0) / 2
    tools = (w["tools_ms"] or 0) - (w["overlap_ms"] or 0) / 2
    cells = [round(model / wall * width), round(tools / wall * width)]
    cells.append(max(0, width - sum(cells)))
    for n, char, style in zip(cells, "█▓░", ("cyan", "green", "dim"), strict=True):
        text.append(char * max(0, n), style=style)
    return text


def _turn_renderable(turn: dict[str, Any]) -> RenderableType:
    w = turn["waterfall"]
    title = (f"Turn {turn['index']} · {turn['outcome']}"
             + (f" ({turn['outcome_reason']})" if turn.get("outcome_reason") else "")
             + f" · wall {ms(w['wall_ms'])}" + (f" · queued {ms(w['queue_wait_ms'])} before" if w["queue_wait_ms"] else ""))
    table = _table(title, compact=True)
    table.add_column("call", no_wrap=True)
    table.add_column("█ model ▓ tools ░ other", no_wrap=True, min_width=WATERFALL_WIDTH + 2)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("")
    wall = w["wall_ms"] or 0
    rows = sorted([("api", c) for c in turn["api_calls"]] + [("tool", c) for c in turn["tool_calls"]],
                  key=lambda kc: kc[1].get("offset_ms") or 0)
    for kind, c in rows:
        if kind == "api":
            label = "model" + (f" retry {c['attempt']}" if c.get("attempt") else "")
            note = f"TTFT {ms(c['ttft_ms'])}" if c.get("ttft_ms") is not None else ""
            if c["status"] != "ok":
                note = " ".join(x for x in (c["status"], c.get("error_type"),
                                            f"HTTP {c['http_status']}" if c.get("http_status") else "") if x)
        else:
            label = f"tool {c['tool_name']}"
            note = "" if c["status"] == "ok" else " ".join(x for x in (c["status"], c.get("error_type")) if x)
        table.add_row(label, f"│{_span(c.get('offset_ms'), c.get('latency_ms'), wall)}│", ms(c.get("latency_ms")), note)
    if w["wall_ms"] is not None:
        table.add_row("total", Text("│").append_text(_stacked(w)).append("│"), ms(w["wall_ms"]),
                      f"model {ms(w['model_ms'])} · tools {ms(w['tools_ms'])} · other {ms(w['other_ms'])}"
                      + (f" (calls overlapped {ms(w['overlap_ms'])})" if w["overlap_ms"] else ""))
    if w["untimed_calls"]:
        table.add_row("", "", "", f"{w['untimed_calls']} calls without timing")
    if turn["subagent_sessions"]:
        table.add_row("subagents", ", ".join(turn["subagent_sessions"]), "", "")
    return table


def session_renderable(detail: dict[str, Any]) -> Group:
    s, lineage, totals = detail["session"], detail["lineage"], detail["totals"]
    head = Text.assemble(
        ("hermetry show ", "bold"), (s["session_id"], "bold"), "\n",
        f"{s.get('source') or NA} · {s.get('session_type') or NA} · {s.get('model') or NA} ({s.get('provider') or NA})"
        f" · profile {s.get('profile') or NA}\n",
        f"started {s['started_at'] or NA} · ended {s['ended_at'] or NA} · duration {ms(s['duration_ms'])} · "
        f"outcome {s['outcome'] or NA}" + (f" ({s['end_reason']})" if s.get("end_reason") else ""),
    )
    parts: list[RenderableType] = [head]
    if lineage["parents"] or lineage["children"]:
        tree = _table("Lineage")
        tree.add_column("")
        tree.add_column("session", no_wrap=True)
        tree.add_column("kind")
        tree.add_column("outcome")
        for p in lineage["parents"]:
            tree.add_row("parent", p["session_id"], p.get("lineage") or ("root" if p is lineage["parents"][-1] else NA),
                         p.get("outcome") or NA)
        tree.add_row("this", s["session_id"], s.get("lineage") or "root", s["outcome"] or NA)
        for c in lineage["children"]:
            tree.add_row("child", c["session_id"], c.get("lineage") or NA, c.get("outcome") or NA)
        parts.append(tree)
    t = totals
    time = t["time"]
    summary = _table("Totals")
    summary.add_column("")
    summary.add_column("this session", justify="right")
    conv = detail["conversation_totals"]
    show_conv = lineage["conversation_sessions"] > 1
    if show_conv:
        summary.add_column(f"conversation ({lineage['conversation_sessions']} sessions)", justify="right")
    for label, key in (("turns", "turns"), ("API calls", "api_calls"), ("API errors", "api_errors"),
                       ("tool calls", "tool_calls"), ("tool failures", "tool_failures")):
        summary.add_row(label, count(t[key]), *([count(conv[key])] if show_conv else []))
    summary.add_row("tokens", count(t["tokens"]["total_tokens"]),
                    *([count(conv["tokens"]["total_tokens"])] if show_conv else []))
    summary.add_row("cost", cost_short(t["cost"]), *([cost_short(conv["cost"])] if show_conv else []))
    summary.add_row("turn wall time", ms(time["wall_ms"]), *([""] if show_conv else []))
    summary.add_row("  model calls", ms(time["model_ms"]), *([""] if show_conv else []))
    summary.add_row("  tool calls", ms(time["tools_ms"]), *([""] if show_conv else []))
    if time["overlap_ms"]:
        summary.add_row("  overlapping (counted twice)", ms(time["overlap_ms"]), *([""] if show_conv else []))
    summary.add_row("  other (Hermes between calls)", ms(time["other_ms"]), *([""] if show_conv else []))
    if time["queue_wait_ms"]:
        summary.add_row("queue wait before turns", ms(time["queue_wait_ms"]), *([""] if show_conv else []))
    parts.append(summary)
    parts.extend(_turn_renderable(turn) for turn in detail["turns"])
    loose = detail["unattributed"]
    if loose["api_calls"] or loose["tool_calls"]:
        parts.append(Text(f"{len(loose['api_calls'])} API calls and {len(loose['tool_calls'])} tool calls "
                          "were recorded outside any turn", style="dim"))
    return _spaced(parts)


def print_session(detail: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(session_renderable(detail))


# ---------------------------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------------------------

def chat_text(report: dict[str, Any]) -> str:
    """A compact, plain-text report for a chat message (Telegram, Discord, Slack, the CLI)."""
    cov, turns, api = report["coverage"], report["turns"], report["api_calls"]
    ttft = api["ttft_ms"]
    lines = [
        f"hermetry — last {report['window']['days']:g} day{'' if report['window']['days'] == 1 else 's'}",
        f"{cov['sessions']} sessions, {cov['turns']} turns, {cov['api_calls']} API calls, {cov['tool_calls']} tool calls",
        f"completed: {pct(turns['completion_rate'])}",
        f"failed: {pct(turns['failure_rate'])}",
        f"turn time p50/p95: {ms(turns['wall_ms']['p50'])} / {ms(turns['wall_ms']['p95'])}",
        f"API p50/p95: {ms(api['latency_ms']['p50'])} / {ms(api['latency_ms']['p95'])}",
        f"TTFT p50: {ms(ttft['p50'])} ({covered(ttft)})",
        f"tokens: {count(api['tokens']['total_tokens'])} (in {count(api['tokens']['input_tokens'])}, "
        f"cache {count(api['tokens']['cache_read_tokens'])}, out {count(api['tokens']['output_tokens'])})",
        f"cost: {cost_line(api['cost'])}",
    ]
    if report["tools"]:
        top = report["tools"][:3]
        lines.append("tools: " + ", ".join(f"{t['tool_name']} {t['calls']}"
                                           + (f" ({t['failures']} failed)" if t["failures"] else "") for t in top))
    if cov["events_dropped"]:
        lines.append(f"({cov['events_dropped']} events dropped by the recorder)")
    for dim, rows in report["breakdowns"].items():
        lines.append(f"by {dim}:")
        for row in rows:
            if row["turns"] is None:
                t = row["tool_calls"]
                lines.append(f"  {row[dim] or NA}: {t['count']} calls, {pct_short(t['failure_rate'])} failed")
                continue
            t = row["turns"]
            lines.append(f"  {row[dim] or NA}: {t['count']} turns, {pct(t['completion_rate'])}, "
                         f"p95 {ms(t['wall_ms']['p95'])}")
    return "\n".join(lines)
