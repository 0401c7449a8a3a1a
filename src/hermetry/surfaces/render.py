"""Terminal and chat renderings of analytics results. Formatting only: no numbers computed here.

``rich`` renderables for the terminal — tables that fit any width without cutting a value
(:mod:`hermetry.surfaces.render_layout`), small inline charts (per-day sparklines, a histogram
of turn wall time, a waterfall per turn) — and a plain-text form for chat (the ``/telemetry``
slash command) whose lines break only between figures. Units and symbols come from
:mod:`hermetry.surfaces.text`; every report ends with a legend of the symbols it used.

Times are local with the zone named (``tz=None``), or in the zone given (``--utc``).
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, tzinfo
from typing import IO, Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.text import Text

from hermetry.surfaces.render_layout import Column, Grid, flow_text
from hermetry.surfaces.text import (
    INCLUDED,
    NA,
    NOT_COUNTED,
    PRUNED,
    UNPRICED,
    cost_line,
    cost_short,
    count,
    coverage,
    duration,
    legend,
    number,
    percent,
    percentile_mark,
    percentile_method,
    percentiles_titled,
    plural,
    rate,
    rate_short,
    usd,
    when,
    when_short,
    window,
    zone_name,
)

SPARK = "▁▂▃▄▅▆▇█"
#: The width of plain output (not a terminal: a pipe, a file, cron mail, a CI log) unless
#: ``COLUMNS`` says otherwise: wide enough for the full tables, narrow enough for any mail reader.
PLAIN_WIDTH = 100

# Kept for callers of the earlier names.
ms = duration
pct = rate
pct_short = rate_short
covered = coverage

__all__ = ["INCLUDED", "NA", "UNPRICED", "chat_text", "compare_renderable", "console", "cost_line", "cost_short",
           "count", "covered", "ms", "pct", "pct_short", "print_compare", "print_report", "print_session",
           "print_sessions", "report_renderable", "session_renderable", "sessions_renderable", "usd"]


def console(file: IO[str] | None = None, *, width: int | None = None, stderr: bool = False) -> Console:
    """A console for reports: the terminal's width, or — when the output is not a terminal —
    ``COLUMNS`` or :data:`PLAIN_WIDTH`, without colour codes."""
    probe = Console(file=file, stderr=stderr)
    if width is None and not probe.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PLAIN_WIDTH
    return Console(file=file, stderr=stderr, width=width, soft_wrap=False)


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


def _spaced(parts: list[RenderableType]) -> Group:
    parts = [p for p in parts if not (isinstance(p, Text) and not p.plain)]
    return Group(*[p for i, part in enumerate(parts) for p in ((Text(""), part) if i else (part,))])


def _legend(parts: list[RenderableType], *symbols: str) -> Text:
    """The legend of what ``parts`` print (their plain text is probed for each symbol)."""
    texts = []
    for part in parts:
        if isinstance(part, Grid):
            texts.append(part.plain())
        elif isinstance(part, Text):
            texts.append(part.plain)
        else:  # the small charts
            sink = io.StringIO()
            Console(width=400, file=sink, color_system=None).print(part)
            texts.append(sink.getvalue())
    return Text(legend("\n".join(texts), symbols), style="dim")


# ---------------------------------------------------------------------------------------------
# insights
# ---------------------------------------------------------------------------------------------

def empty_hint() -> Text:
    return Text.assemble(
        ("Nothing recorded in this window yet.", "bold"), " To record your agent's runs, enable the plugin:\n",
        ("  hermes plugins enable hermetry --no-allow-tool-override\n", "bold"),
        "To bring in the history Hermes already has:\n",
        ("  hermetry import", "bold"),
    )


def _is_empty(report: dict[str, Any]) -> bool:
    cov = report["coverage"]
    return not (cov["sessions"] or cov["turns"] or cov["api_calls"] or cov["tool_calls"]
                or cov.get("sessions_started"))


class _Daily:
    """The per-day sparklines; days are grouped (``1 block = 2 days``) to fit the width."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        daily = self.report["daily"]
        width = options.max_width
        label_w, max_w = len("failed turns"), 10
        room = max(7, width - label_w - max_w - 6)
        per = max(1, math.ceil(len(daily) / room))
        title = f"Per day, {daily[0]['day']} → {daily[-1]['day']} (UTC days"
        title += f"; 1 block = {per} days)" if per > 1 else ")"
        grid = Grid(title, [Column("", key=True, justify="left"), Column("", justify="left"), Column("max")])

        def grouped(series: list[float | None], fold: Callable[[list[float]], float]) -> list[float | None]:
            out: list[float | None] = []
            for i in range(0, len(series), per):
                chunk = [v for v in series[i:i + per] if v is not None]
                out.append(fold(chunk) if chunk else None)
            return out

        for key, label in (("turns", "turns"), ("turn_failures", "failed turns"), ("api_calls", "API calls"),
                           ("total_tokens", "tokens")):
            series = [d[key] for d in daily]
            known = [v for v in series if v is not None]
            grid.add_row(label, sparkline(grouped(series, sum)), count(max(known)) if known else NA)
        by_day = {row["day"]: row for row in self.report["breakdowns"].get("day", [])}
        method = percentile_method(s for row in by_day.values() for s in (row["turns"]["wall_ms"],
                                                                         row["api_calls"]["latency_ms"]))
        if method:
            grid.title = f"{title}; p95 {method}"
        if by_day:  # latency per day, when the report was broken down by day
            for label, pick in (("turn p95", lambda r: r["turns"]["wall_ms"]["p95"]),
                                ("API p95", lambda r: r["api_calls"]["latency_ms"]["p95"])):
                series = [pick(by_day[d["day"]]) if d["day"] in by_day else None for d in daily]
                known = [v for v in series if v is not None]
                grid.add_row(label, sparkline(grouped(series, max)), duration(max(known)) if known else NA)
        yield grid


def _dist_row(name: str, d: dict[str, Any], noun: str = "calls", method: str = "") -> list[str]:
    return [name + percentile_mark(d, method), duration(d["avg"]), duration(d["p50"]), duration(d["p95"]),
            duration(d["p99"]), duration(d["max"]), coverage(d, noun)]


def _edge_label(edges: list[float], i: int) -> str:
    lo = duration(edges[i]) if edges[i] else "0"
    return f"≥ {lo}" if i + 1 == len(edges) else f"{lo} – {duration(edges[i + 1])}"


def _histogram(h: dict[str, Any]) -> Grid | None:
    counts, edges = h["counts"], h["edges_ms"]
    if not any(counts):
        return None
    last = max(i for i, n in enumerate(counts) if n)
    top = max(counts)
    grid = Grid("Turn wall time", [Column("", key=True), Column("turns"), Column("", justify="left")])
    for i in range(last + 1):
        grid.add_row(_edge_label(edges, i), count(counts[i]), bar(counts[i], top, 24))
    return grid


_BREAKDOWN_COLUMNS = (
    Column("sessions", "sess."), Column("turns"), Column("completed", "compl."), Column("turn p95"),
    Column("API p95"), Column("TTFT p50", "TTFT"), Column("tokens"), Column("cost"),
)


def _breakdown_table(dim: str, rows: list[dict[str, Any]]) -> Grid:
    label = dim.replace("_", " ")
    if dim in ("tool", "toolset"):
        lat = [row["tool_calls"]["latency_ms"] for row in rows]
        method = percentile_method(lat)
        grid = Grid(percentiles_titled(f"By {label}", lat), [Column(label, key=True, justify="left"), Column("calls"),
                                                            Column("failed"), Column("p50"), Column("p95")])
        for row in rows:
            t = row["tool_calls"]
            grid.add_row((row[dim] or NA) + percentile_mark(t["latency_ms"], method), count(t["count"]),
                         rate_short(t["failure_rate"]), duration(t["latency_ms"]["p50"]),
                         duration(t["latency_ms"]["p95"]))
        return grid
    dists = [d for row in rows for d in (row["turns"]["wall_ms"], row["api_calls"]["latency_ms"],
                                         row["api_calls"]["ttft_ms"])]
    method = percentile_method(dists)
    grid = Grid(percentiles_titled(f"By {label}", dists), [Column(label, key=True, justify="left"), *_BREAKDOWN_COLUMNS])
    for row in rows:
        t, a = row["turns"], row["api_calls"]
        mark = max((percentile_mark(d, method) for d in (t["wall_ms"], a["latency_ms"], a["ttft_ms"])), key=len)
        sessions = NOT_COUNTED if row["sessions"] is None else count(row["sessions"])  # None: the rollup path
        grid.add_row((row[dim] or NA) + mark, sessions, count(t["count"]), rate_short(t["completion_rate"]),
                     duration(t["wall_ms"]["p95"]), duration(a["latency_ms"]["p95"]), duration(a["ttft_ms"]["p50"]),
                     count(a["tokens"]["total_tokens"]), cost_short(a["cost"]))
    return grid


def _rollups(report: dict[str, Any]) -> bool:
    return (report.get("method") or {}).get("path") == "rollups"


def _head(title: str, report: dict[str, Any], tz: tzinfo | None) -> Text:
    cov, w = report["coverage"], report["window"]
    filters = report.get("filters") or {}
    return Text.assemble(
        (title, "bold"), "  ", window(w["since_ms"], w["until_ms"], tz),
        (f"  filters: {', '.join(f'{k}={v}' for k, v in filters.items())}" if filters else ""),
        "\n",
        " · ".join(((f"{NOT_COUNTED} sessions with activity" if cov["sessions"] is None and _rollups(report)
                     else plural(cov["sessions"], "session") + " with activity"), plural(cov["turns"], "turn"),
                    plural(cov["api_calls"], "API call"), plural(cov["tool_calls"], "tool call"))),
        (f"\n{plural(cov['events_dropped'], 'event')} dropped by the recorder (not in these figures)", "yellow")
        if cov["events_dropped"] else "",
        *pruned_note(report, tz),
    )


def _iso_ms(value: str | None) -> float | None:
    from datetime import datetime

    return None if not value else datetime.fromisoformat(value).timestamp() * 1000


def pruned_note(report: dict[str, Any], tz: tzinfo | None) -> tuple[tuple[str, str], ...]:
    """One line when the window reaches back before ``hermetry prune``'s boundary: that time is
    read from the rollups (from a whole hour), and rows written for it since are not counted."""
    m = report.get("method") or {}
    pruned = _iso_ms(m.get("pruned_before"))
    if pruned is None or report["window"]["since_ms"] >= pruned:
        return ()
    snapped = _iso_ms(m.get("since_read_from"))
    line = (f"\nbefore {when(pruned, tz)} raw rows were pruned: read from the rollups"
            + (f" from {when(snapped, tz)} (whole hours)" if snapped is not None else ""))
    late = sum((m.get("late_rows") or {}).values())
    return ((line, "dim"),) + ((f"; {plural(late, 'row')} written for that time later NOT counted (hermetry "
                                "doctor)", "yellow"),) if late else ((line, "dim"),)


def activity_parts(report: dict[str, Any], tz: tzinfo | None = None) -> list[RenderableType]:
    """What ``hermes insights`` shows (the report's ``activity``), for the text report."""
    act = report.get("activity")
    if not act or not act["sessions"]:
        return []
    zone = zone_name(tz, report["window"]["until_ms"])
    m = act["messages"]
    derived = m["sessions_derived"]
    overview = Grid(f"Activity (as hermes insights; sessions started in the window, {zone})",
                    [Column("", key=True, justify="left"), Column("", justify="left", wrap=True)])
    how = ("" if not derived else " (derived from turns and calls)" if not m["sessions_exact"]
           else f" ({derived} of {act['sessions']} sessions derived from turns and calls)")
    overview.add_row("messages", f"{count(m['total'])}{how}")
    overview.add_row("user messages", count(m["user"]))
    overview.add_row("messages per session", number(act["avg_messages_per_session"]))
    overview.add_row("active time", duration(act["active_time_ms"])
                     + (f" ({plural(act['sessions_timed'], 'ended session')})" if act["sessions_timed"] else ""))
    overview.add_row("average session", duration(act["avg_session_ms"]))
    overview.add_row("active days", f"{count(act['active_days'])}, longest streak "
                     f"{plural(act['longest_streak_days'], 'day')}")
    skills = act["skills"]
    overview.add_row("skills", f"{plural(skills['loads'], 'load')}, {plural(skills['edits'], 'edit')} "
                     f"(which skills: {NA}, a tool argument hermetry does not store)")
    tv = act["tokens_vs_hermes"]
    overview.add_row("tokens vs Hermes", f"{count(tv['total_tokens'])} here = {count(tv['main_loop_tokens'])} "
                     f"main loop (what Hermes' per-platform table counts) + {count(tv['auxiliary_tokens'])} "
                     "auxiliary (compression, titles, vision)")
    parts: list[RenderableType] = [overview]

    week = Grid(f"Sessions by weekday and hour ({zone})",
                [Column("", key=True, justify="left"), Column("sessions"), Column("", justify="left")])
    top = max(d["sessions"] for d in act["by_weekday"])
    for d in act["by_weekday"]:
        week.add_row(d["day"], count(d["sessions"]), bar(d["sessions"], top, 15))
    peak = sorted((h for h in act["by_hour"] if h["sessions"]), key=lambda h: (-h["sessions"], h["hour"]))[:5]
    week.notes.append(Text("busiest hours: " + ", ".join(f"{h['hour']:02d}:00 ({h['sessions']})" for h in peak)))
    parts.append(week)

    notable = Grid("Notable sessions", [Column("", key=True, justify="left"), Column("", justify="left"),
                                        Column("session", justify="left"), Column("started", justify="left")])
    labels = {"longest": ("longest", lambda v: duration(v["duration_ms"])),
              "most_messages": ("most messages", lambda v: plural(int(v["messages"]), "message")),
              "most_tokens": ("most tokens (in + out)", lambda v: plural(int(v["tokens"]), "token")),
              "most_tool_calls": ("most tool calls", lambda v: plural(int(v["tool_calls"]), "tool call"))}
    for key, (label, fmt) in labels.items():
        v = act["notable_sessions"].get(key)
        if v:
            notable.add_row(label, fmt(v), v["session_id"], (v["started_at"] or NA)[:16].replace("T", " "))
    skipped = act.get("notable_sessions_not_computed")
    if skipped:  # the rollup path: per-session totals of a large window are not computed
        hint = skipped.get("hint") or "--exact"
        why = ("raw rows before the prune boundary are gone" if hint != "--exact"
               else "a window this large is read from rollups")
        notable.notes.append(Text(f"most messages, tokens, tool calls: {NA} ({why}; per-session totals: {hint})",
                                  style="dim"))
    if notable.rows or skipped:
        parts.append(notable)
    return parts


def report_renderable(report: dict[str, Any], *, tz: tzinfo | None = None) -> Group:
    """The insights report (``hermetry.insights.v1``) as tables and small charts."""
    turns, api = report["turns"], report["api_calls"]
    head = _head("hermetry insights", report, tz)
    if _is_empty(report):
        return _spaced([head, empty_hint()])
    parts: list[RenderableType] = [head]
    daily = report.get("daily") or []
    if len(daily) > 1:
        parts.append(_Daily(report))

    outcomes = Grid("Turns", [Column("outcome", key=True, justify="left"), Column("turns")])
    for name, n in turns["by_outcome"].items():
        outcomes.add_row(name, count(n))
    outcomes.add_row("completion rate", rate(turns["completion_rate"]))
    outcomes.add_row("failure rate", rate(turns["failure_rate"]))
    parts.append(outcomes)
    note = derived_note(report)
    if note:
        parts.append(Text(note, style="dim"))
    sessions = report.get("sessions")
    if sessions and sessions["count"]:
        parts.append(Text(f"Sessions started in the window: {count(sessions['count'])} ("
                          + ", ".join(f"{k} {count(v)}" for k, v in sessions["by_outcome"].items()) + ")"))

    dists = [turns["wall_ms"], api["latency_ms"], api["ttft_ms"], report["tool_calls"]["latency_ms"],
             turns["queue_wait_ms"]]
    method = percentile_method(dists)
    lat = Grid(percentiles_titled("Latency", dists),
               [Column("", key=True, justify="left"), Column("avg"), Column("p50"), Column("p95"),
                Column("p99"), Column("max"), Column("captured", justify="left", footnote=True)])
    wall = _dist_row("turn wall time", turns["wall_ms"], "turns", method)
    if turns.get("derived", {}).get("in_wall_ms"):  # imported: from message timestamps, not measured
        wall[-1] += f", {count(turns['derived']['in_wall_ms'])} derived"
    lat.add_row(*wall)
    lat.add_row(*_dist_row("API call", api["latency_ms"], method=method))
    lat.add_row(*_dist_row("time to first token", api["ttft_ms"], method=method))
    lat.add_row(*_dist_row("tool call", report["tool_calls"]["latency_ms"], method=method))
    if turns["queue_wait_ms"]["count"]:
        lat.add_row(*_dist_row("queue wait", turns["queue_wait_ms"], "turns", method))
    parts.append(lat)
    histogram = _histogram(turns["wall_ms_histogram"])
    if histogram is not None:
        parts.append(histogram)

    tok = api["tokens"]
    tokens = Grid("Tokens and cost", [Column("", key=True, justify="left"), Column("total", "")])
    for kind in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
                 "total_tokens"):
        label = "  of which reasoning" if kind == "reasoning_tokens" else kind.replace("_tokens", "").replace("_", " ")
        tokens.add_row(label, count(tok[kind]))
    tokens.add_row("usage captured", coverage(tok))
    tokens.add_row("cost captured", coverage(api["cost"]))
    tasks = api.get("by_task") or {}
    if set(tasks) - {"main"}:  # auxiliary model calls: compression summaries, titles, vision, …
        tokens.notes.append(Text.assemble(("calls by task: ", "bold"), ", ".join(
            f"{task} {count(t['count'])} ({count(t['tokens']['total_tokens'])} tokens)" for task, t in tasks.items())))
    if api.get("interrupted"):
        tokens.notes.append(Text.assemble(("interrupted calls: ", "bold"), count(api["interrupted"]),
                                          " (stopped by a person or a timeout; not errors)"))
    tokens.notes.append(Text.assemble(("cost: ", "bold"), cost_line(api["cost"])))
    tokens.notes.append(Text.assemble(("API errors: ", "bold"), f"{count(api['errors'])} of "
                                      f"{plural(api['error_rate']['n'], 'call')} that could fail"
                                      + (f" ({', '.join(f'{k} {count(v)}' for k, v in api['error_types'].items())})"
                                         if api["errors"] else "")))
    parts.append(tokens)

    conv = report.get("conversations")
    if conv and conv["count"]:
        per_conversation = [conv.get(k) for k in ("turns_per_conversation", "api_calls_per_conversation",
                                                 "tokens_per_conversation", "cost_usd_per_conversation")]
        grid = Grid(percentiles_titled(f"Conversations: {count(conv['count'])} "
                                       f"({plural(conv['subagent_sessions'], 'subagent session')} and "
                                       f"{plural(conv['continuation_sessions'], 'continuation session')} rolled up)",
                                       per_conversation),
                    [Column("per conversation", "", key=True, justify="left"), Column("avg"), Column("p50"),
                     Column("p95"), Column("max"), Column("captured", justify="left", footnote=True)])
        for key, label, fmt in (("turns_per_conversation", "turns", lambda v: number(v, 1)),
                                ("api_calls_per_conversation", "API calls", lambda v: number(v, 1)),
                                ("tokens_per_conversation", "tokens", count),
                                ("cost_usd_per_conversation", "cost", usd)):
            d = conv[key]
            grid.add_row(label, fmt(d["avg"]), fmt(d["p50"]), fmt(d["p95"]), fmt(d["max"]),
                         coverage(d, "conversations"))
        parts.append(grid)
    elif _rollups(report) and report["coverage"]["api_calls"]:
        parts.append(Text(f"Conversations: {NOT_COUNTED} (per-conversation totals need every row of a window "
                          "this large: hermetry insights --exact)", style="dim"))

    if report["tools"]:
        share = {t["tool_name"]: t["share"] for t in (report.get("activity") or {}).get("tools", [])}
        total_calls = report["tool_calls"]["count"]
        lats = [t["latency_ms"] for t in report["tools"]]
        method = percentile_method(lats)
        tools = Grid(percentiles_titled("Tools", lats, "p50/p95"),
                     [Column("tool", key=True, justify="left"), Column("toolset", justify="left"),
                      Column("calls"), Column("share"), Column("failed"), Column("p50"), Column("p95")])
        for t in report["tools"]:
            tool_share = t["calls"] / total_calls if total_calls else None
            tools.add_row(t["tool_name"] + percentile_mark(t["latency_ms"], method), t["toolset"] or NA, count(t["calls"]),
                          percent(share.get(t["tool_name"], tool_share), 1), rate_short(t["failure_rate"]),
                          duration(t["latency_ms"]["p50"]), duration(t["latency_ms"]["p95"]))
        parts.append(tools)
    for dim, rows in report["breakdowns"].items():
        parts.append(_breakdown_table(dim, rows))
    parts.extend(activity_parts(report, tz))
    parts.append(_legend(parts))
    return _spaced(parts)


def print_report(report: dict[str, Any], console: Console | None = None, *, tz: tzinfo | None = None) -> None:
    (console or _default_console()).print(report_renderable(report, tz=tz))


def _default_console() -> Console:
    return console(sys.stdout)


# ---------------------------------------------------------------------------------------------
# The four questions on one screen (the demo's summary; fits 80 × 24)
# ---------------------------------------------------------------------------------------------

def summary_renderable(report: dict[str, Any], dims: tuple[str, ...] = ("source", "model"), *,
                       tz: tzinfo | None = None) -> Group:
    """How long, how many tokens, how much money, how often it completes — one screen."""
    turns, api = report["turns"], report["api_calls"]
    w = report["window"]
    head = Text.assemble(("hermetry: the four questions", "bold"), "  ", window(w["since_ms"], w["until_ms"], tz))
    if _is_empty(report):
        return Group(head, Text(""), empty_hint())
    tok, wall, lat = api["tokens"], turns["wall_ms"], api["latency_ms"]
    lines = Text.assemble(
        ("Latency   ", "bold"), f"turn avg {duration(wall['avg'])}, p95 {duration(wall['p95'])} "
        f"({plural(wall['coverage']['captured'], 'turn')}); API call p95 {duration(lat['p95'])} "
        f"({plural(lat['coverage']['captured'], 'call')})\n",
        ("Tokens    ", "bold"), f"{count(tok['total_tokens'])} (input {count(tok['input_tokens'])}, cache "
        f"{count(tok['cache_read_tokens'])}, output {count(tok['output_tokens'])}; "
        f"{tok['coverage']['captured']}/{tok['coverage']['of']} calls)\n",
        ("Cost      ", "bold"), f"{cost_line(api['cost'])}\n",
        ("Outcomes  ", "bold"), f"completed {rate(turns['completion_rate'])}, failed {rate(turns['failure_rate'])}\n",
        ("Turns     ", "bold"), ", ".join(f"{k.replace('_', ' ')} {count(v)}" for k, v in turns["by_outcome"].items()),
        *((("\n"), ("Sessions  ", "bold"), ", ".join(f"{k.replace('_', ' ')} {count(v)}"
                                                     for k, v in report["sessions"]["by_outcome"].items()))
          if report.get("sessions", {}).get("count") else ()),
    )
    parts: list[RenderableType] = [head, lines]
    for dim in dims:
        rows = report["breakdowns"].get(dim)
        if not rows or dim in ("tool", "toolset"):
            continue
        grid = Grid(None, [
            Column(dim.replace("_", " "), key=True, justify="left"), Column("turns"), Column("completed", "compl."),
            Column("failed"), Column("avg"), Column("p95"), Column("tokens"), Column("cost")])
        for row in rows:
            t, a = row["turns"], row["api_calls"]
            grid.add_row(row[dim] or NA, count(t["count"]), percent(t["completion_rate"]["value"]),
                         percent(t["failure_rate"]["value"]), duration(t["wall_ms"]["avg"]),
                         duration(t["wall_ms"]["p95"]), count(a["tokens"]["total_tokens"]), cost_short(a["cost"]))
        parts.append(grid)
    foot = _legend(parts)
    method = percentile_method([wall, lat, *(row["turns"]["wall_ms"] for dim in dims
                                            for row in report["breakdowns"].get(dim) or [] if row.get("turns"))])
    foot.append(("" if not foot.plain else " · ") + "rates of ended turns; avg and p95 of turn wall time"
                + (f"; p95 {method}" if method else ""))
    parts.append(foot)
    return Group(*[p for i, part in enumerate(parts) for p in ((Text(""), part) if 1 < i < len(parts) - 1 else (part,))])


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------

_VERDICT_STYLE = {"regression": "bold red", "improvement": "green", "no significant change": "",
                  "insufficient data": "dim"}


def _metric_value(m: dict[str, Any], value: float | None) -> str:
    if m["unit"] == "ms":
        return duration(value)
    if m["unit"] == "USD":
        return usd(value)
    return percent(value, 1)


def compare_renderable(result: dict[str, Any], *, tz: tzinfo | None = None) -> Group:
    a, b = result["baseline"], result["current"]

    def side(name: str, w: dict[str, Any]) -> str:
        return (f"{name}  {window(w['since_ms'], w['until_ms'], tz)}  ({plural(w['coverage']['turns'], 'turn')}, "
                f"{plural(w['coverage']['api_calls'], 'API call')})")

    head = Text.assemble(("hermetry compare", "bold"), "\n", side("baseline", a), "\n", side("current ", b))
    # the p95 rows' figures: exact, or from rollups (≤1 % relative error), said once as insights does
    summaries = [w.get(k) for w in (a, b) for k in ("turn_wall_ms", "api_latency_ms", "ttft_ms")]
    method = percentile_method(summaries)
    grid = Grid(percentiles_titled("Metrics", summaries, "p95") if method else None,
                [Column("metric", key=True, justify="left"), Column("baseline"), Column("current"),
                 Column("change"), Column("p"), Column("verdict", justify="left", wrap=True)])
    for m in result["metrics"]:
        change = m.get("relative_change")
        mark = percentile_mark({"count": (m.get("n_baseline") or 0) + (m.get("n_current") or 0),
                                "method": m.get("method")}, method) if "method" in m else ""
        grid.add_row(
            m["metric"] + mark, _metric_value(m, m["baseline"]), _metric_value(m, m["current"]),
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
    notes = [Text(m["note"], style="dim") for m in result["metrics"] if m.get("note")]  # sampled, pruned
    parts: list[RenderableType] = [head, grid, *notes, verdict, foot]
    parts.append(_legend(parts))
    return _spaced(parts)


def print_compare(result: dict[str, Any], console: Console | None = None, *, tz: tzinfo | None = None) -> None:
    (console or _default_console()).print(compare_renderable(result, tz=tz))


# ---------------------------------------------------------------------------------------------
# sessions and one session
# ---------------------------------------------------------------------------------------------

def sessions_renderable(result: dict[str, Any], *, tz: tzinfo | None = None) -> Group:
    w = result["window"]
    shown = len(result["sessions"])
    what = "conversation" if result["rolled_up"] else "session"
    head = Text.assemble(("hermetry sessions", "bold"), "  ", window(w["since_ms"], w["until_ms"], tz), "\n",
                         f"{count(shown)} of {plural(result['count'], what)}, newest first")
    if not result["count"]:
        return _spaced([head, empty_hint()])
    zone = zone_name(tz, w["until_ms"])
    grid = Grid(None, [Column(f"started ({zone})", "started", key=True, justify="left"),
                       Column("session", key=True, justify="left"), Column("source", justify="left"),
                       Column("outcome", justify="left"), Column("turns"), Column("calls"), Column("tokens"),
                       Column("cost"), Column("took")],
                ruled=False, stack_before_split=True)
    rolled = pruned = False
    for s in result["sessions"]:
        calls = count(s["api_calls"]) + (f" ({s['api_errors']}✗)" if s["api_errors"] else "")
        extra = s.get("sessions_in_conversation", 1) - 1
        rolled = rolled or extra > 0
        figures = [count(s["turns"]), calls, count(s["tokens"]["total_tokens"]), cost_short(s["cost"])]
        if s.get("pruned"):  # its rows are gone: unknown, not the zeros the rest would add up to
            pruned = True
            figures = [PRUNED, "", "", ""]
        grid.add_row(when_short(s.get("started_at_ms"), tz), s["session_id"] + (f" +{extra}" if extra else ""),
                     s.get("source") or NA, (s.get("outcome") or NA) + (" (imported)" if s.get("origin") == "backfill" else ""),
                     *figures, duration(s.get("duration_ms")))
    parts: list[RenderableType] = [head, grid]
    parts.append(_legend(parts, *(("+N",) if rolled else ()), *((PRUNED,) if pruned else ())))
    return _spaced(parts)


def print_sessions(result: dict[str, Any], console: Console | None = None, *, tz: tzinfo | None = None) -> None:
    (console or _default_console()).print(sessions_renderable(result, tz=tz))


def _span(offset: float | None, took: float | None, wall: float, width: int) -> str:
    if offset is None or took is None or wall <= 0:
        return " " * width
    start = min(width - 1, max(0, int(offset / wall * width)))
    end = min(width, max(start + 1, round((offset + took) / wall * width)))
    return " " * start + "█" * (end - start) + " " * (width - end)


def _stacked(w: dict[str, Any], width: int) -> Text:
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


class _Turn:
    """One turn's waterfall; the bars take the width the labels leave (10–40 cells)."""

    def __init__(self, turn: dict[str, Any]) -> None:
        self.turn = turn

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        turn = self.turn
        w = turn["waterfall"]
        title = (f"Turn {turn['index']} · {turn['outcome']}"
                 + (f" ({turn['outcome_reason']})" if turn.get("outcome_reason") else "")
                 + f" · wall {duration(w['wall_ms'])}"
                 + (f" · queued {duration(w['queue_wait_ms'])} before" if w["queue_wait_ms"] else ""))
        rows = sorted([("api", c) for c in turn["api_calls"]] + [("tool", c) for c in turn["tool_calls"]],
                      key=lambda kc: kc[1].get("offset_ms") or 0)
        cells: list[tuple[str, float | None, float | None, str]] = []
        for n, (kind, c) in enumerate(rows, start=1):
            if kind == "api":
                label = "model" + (f" retry {c['attempt']}" if c.get("attempt") else "")
                note = f"TTFT {duration(c['ttft_ms'])}" if c.get("ttft_ms") is not None else ""
                if c["status"] != "ok":
                    note = " ".join(x for x in (c["status"], c.get("error_type"),
                                                f"HTTP {c['http_status']}" if c.get("http_status") else "") if x)
            else:
                label = f"tool {c['tool_name']}"
                note = "" if c["status"] == "ok" else " ".join(x for x in (c["status"], c.get("error_type")) if x)
            cells.append((f"{n} {label}", c.get("offset_ms"), c.get("latency_ms"), note))
        label_w = max([len("total"), *(len(c[0]) for c in cells)])
        took_w = max([len(duration(w["wall_ms"])), *(len(duration(c[2])) for c in cells)])
        note_w = max([0, *(len(c[3]) for c in cells)])
        room = options.max_width - label_w - took_w - 2 * 2 - 2  # gaps of 2, the bar's two edges
        bar_w = room - note_w - 2 if room - note_w - 2 >= 12 else room  # else the notes go under the table
        bar_w = max(10, min(40, bar_w))
        wall = w["wall_ms"] or 0
        header = "█ model ▓ tools ░ other"
        grid = Grid(title, [Column("call", key=True, justify="left"),
                            Column(header if len(header) <= bar_w + 2 else "█▓░", "", justify="left"),
                            Column("took"), Column("", justify="left", footnote=True)], ruled=False)
        for label, offset, took, note in cells:
            grid.add_row(label, f"│{_span(offset, took, wall, bar_w)}│", duration(took), note)
        if w["wall_ms"] is not None:
            grid.add_row("total", Text("│").append_text(_stacked(w, bar_w)).append("│"), duration(w["wall_ms"]), "")
            grid.notes.append(Text(flow_text(
                [f"model {duration(w['model_ms'])}", f"tools {duration(w['tools_ms'])}",
                 f"other {duration(w['other_ms'])}"]
                + ([f"calls overlapped {duration(w['overlap_ms'])}"] if w["overlap_ms"] else []),
                options.max_width, indent="  ")))
        if w["untimed_calls"]:
            grid.notes.append(Text(f"  {plural(w['untimed_calls'], 'call')} without timing"))
        if turn["subagent_sessions"]:
            grid.notes.append(Text(flow_text(turn["subagent_sessions"], options.max_width, sep=", ",
                                             indent="  subagents: ")))
        yield grid


#: A session with more turns than this lists them in one table and draws the slowest ones.
WATERFALL_TURNS = 20
SLOWEST_TURNS = 5


def _turn_table(turns: list[dict[str, Any]]) -> Grid:
    """One row per turn: where its time went, in figures."""
    grid = Grid(f"Turns ({count(len(turns))})", [
        Column("turn", key=True), Column("outcome", justify="left"), Column("wall"), Column("model"),
        Column("tools"), Column("other"), Column("calls"), Column("tool calls", "tools#")], ruled=False)
    for t in turns:
        w = t["waterfall"]
        grid.add_row(str(t["index"]), t["outcome"], duration(w["wall_ms"]), duration(w["model_ms"]),
                     duration(w["tools_ms"]), duration(w["other_ms"]), count(len(t["api_calls"])),
                     count(len(t["tool_calls"])))
    return grid


def session_renderable(detail: dict[str, Any], *, tz: tzinfo | None = None, all_turns: bool = False) -> Group:
    s, lineage, totals = detail["session"], detail["lineage"], detail["totals"]
    head = Text.assemble(
        ("hermetry show ", "bold"), (s["session_id"], "bold"),
        (" — imported from Hermes' state.db: turn outcomes and times derived from its messages, no call "
         "timed" if s.get("derived") else ""), "\n",
        f"{s.get('source') or NA} · {s.get('session_type') or NA} · {s.get('model') or NA} "
        f"({s.get('provider') or NA}) · profile {s.get('profile') or NA}\n",
        f"started {when(s.get('started_at_ms'), tz)} · ended {when(s.get('ended_at_ms'), tz)} · "
        f"duration {duration(s['duration_ms'])} · outcome {s['outcome'] or NA}"
        + (f" ({s['end_reason']})" if s.get("end_reason") else ""),
    )
    parts: list[RenderableType] = [head]
    if lineage["parents"] or lineage["children"]:
        tree = Grid("Lineage", [Column("", key=True, justify="left"), Column("session", justify="left"),
                                Column("kind", justify="left"), Column("outcome", justify="left")])
        for p in lineage["parents"]:
            tree.add_row("parent", p["session_id"], p.get("lineage") or ("root" if p is lineage["parents"][-1] else NA),
                         p.get("outcome") or NA)
        tree.add_row("this", s["session_id"], s.get("lineage") or "root", s["outcome"] or NA)
        for c in lineage["children"]:
            tree.add_row("child", c["session_id"], c.get("lineage") or NA, c.get("outcome") or NA)
        parts.append(tree)
    t = totals
    time = t["time"]
    conv = detail["conversation_totals"]
    show_conv = lineage["conversation_sessions"] > 1
    columns = [Column("", key=True, justify="left"), Column("this session", "session")]
    if show_conv:
        columns.append(Column(f"conversation ({plural(lineage['conversation_sessions'], 'session')})", "conversation"))
    summary = Grid("Totals", columns)

    def cell(totals: dict[str, Any], figure: str) -> str:
        return PRUNED if totals.get("pruned") else figure

    for label, key in (("turns", "turns"), ("API calls", "api_calls"), ("API errors", "api_errors"),
                       ("tool calls", "tool_calls"), ("tool failures", "tool_failures")):
        summary.add_row(label, cell(t, count(t[key])), *([cell(conv, count(conv[key]))] if show_conv else []))
    summary.add_row("tokens", cell(t, count(t["tokens"]["total_tokens"])),
                    *([cell(conv, count(conv["tokens"]["total_tokens"]))] if show_conv else []))
    summary.add_row("cost", cell(t, cost_short(t["cost"])), *([cell(conv, cost_short(conv["cost"]))] if show_conv else []))
    blank = [""] if show_conv else []
    summary.add_row("turn wall time", cell(t, duration(time["wall_ms"])), *blank)
    if not t.get("pruned"):
        summary.add_row("  model calls", duration(time["model_ms"]), *blank)
        summary.add_row("  tool calls", duration(time["tools_ms"]), *blank)
        if time["overlap_ms"]:
            summary.add_row("  overlapping (counted twice)", duration(time["overlap_ms"]), *blank)
        summary.add_row("  other (Hermes between calls)", duration(time["other_ms"]), *blank)
        if time["queue_wait_ms"]:
            summary.add_row("queue wait before turns", duration(time["queue_wait_ms"]), *blank)
    if t.get("pruned") or conv.get("pruned"):
        summary.notes.append(Text(
            f"pruned (rollups keep the totals): raw turns and calls before {when(detail['pruned_before_ms'], tz)} "
            "were deleted by hermetry prune; hermetry insights over that time still counts them, "
            "without session ids" + ("; the turns below are the ones kept" if detail["turns"] else ""), style="dim"))
    parts.append(summary)
    turns = detail["turns"]
    if all_turns or len(turns) <= WATERFALL_TURNS:
        parts.extend(_Turn(turn) for turn in turns)
    else:
        parts.append(_turn_table(turns))
        slowest = sorted(turns, key=lambda t: -(t["waterfall"]["wall_ms"] or -1))[:SLOWEST_TURNS]
        parts.append(Text(f"The waterfalls of the {len(slowest)} slowest of {plural(len(turns), 'turn')} "
                          f"(every turn: show --all-turns):", style="bold"))
        parts.extend(_Turn(turn) for turn in sorted(slowest, key=lambda t: t["index"]))
    loose = detail["unattributed"]
    if loose["api_calls"] or loose["tool_calls"]:
        parts.append(Text(f"{plural(len(loose['api_calls']), 'API call')} and "
                          f"{plural(len(loose['tool_calls']), 'tool call')} were recorded outside any turn",
                          style="dim"))
    parts.append(_legend(parts, *(("█▓░",) if detail["turns"] else ())))
    return _spaced(parts)


def print_session(detail: dict[str, Any], console: Console | None = None, *, tz: tzinfo | None = None,
                  all_turns: bool = False) -> None:
    (console or _default_console()).print(session_renderable(detail, tz=tz, all_turns=all_turns))


# ---------------------------------------------------------------------------------------------
# chat
# ---------------------------------------------------------------------------------------------

#: Chat lines are kept this short (phones); a line breaks only between words, never inside a figure.
CHAT_WIDTH = 48
_GLUE = "\xa0"  # holds a figure's words together while wrapping (textwrap breaks on ASCII whitespace only)


def _g(figure: str) -> str:
    return figure.replace(" ", _GLUE)


def derived_note(report: dict[str, Any]) -> str | None:
    """One line saying what came from an import (derived) and what the rates leave out."""
    turns = (report.get("turns") or {}).get("derived") or {}
    api = (report.get("api_calls") or {}).get("derived") or {}
    tools = (report.get("tool_calls") or {}).get("derived") or {}
    if not (turns.get("count") or api.get("calls") or tools.get("count")):
        return None
    return (f"derived (imported from Hermes' state.db): {plural(turns.get('count', 0), 'turn')}, "
            f"{plural(api.get('calls', 0), 'API call')}, {plural(tools.get('count', 0), 'tool call')} — "
            "their outcomes, API errors and tool statuses are unknown, so the rates leave them out")


def chat_text(report: dict[str, Any], width: int = CHAT_WIDTH) -> str:
    """A compact, plain-text report for a chat message (Telegram, Discord, Slack, the CLI)."""
    import textwrap

    cov, turns, api = report["coverage"], report["turns"], report["api_calls"]
    ttft = api["ttft_ms"]
    days = report["window"]["days"]
    out: list[str] = []

    def add(line: str, indent: str = "") -> None:
        wrapped = textwrap.wrap(line, width=max(20, width), initial_indent=indent, subsequent_indent=indent + "  ",
                                break_long_words=False, break_on_hyphens=False)
        out.extend(w.replace(_GLUE, " ") for w in wrapped)

    add(f"hermetry, last {_g(plural(days, 'day'))}".replace(".0" + _GLUE, _GLUE))
    if _is_empty(report):
        add(f"Nothing recorded yet. Enable the plugin: {_g('hermes plugins enable hermetry --no-allow-tool-override')}"
            f"; or import the history Hermes has: {_g('hermetry import')}")
        return "\n".join(out)
    add(", ".join((_g(f"{NOT_COUNTED} sessions") if n is None and _rollups(report) else _g(plural(n, noun)))
                  + (" with activity" if noun == "session" else "")
                  for n, noun in ((cov["sessions"], "session"), (cov["turns"], "turn"),
                                  (cov["api_calls"], "API call"), (cov["tool_calls"], "tool call"))))
    pruned = "".join(text for text, _style in pruned_note(report, UTC)).strip()
    if pruned:  # the window reaches back before `hermetry prune`'s boundary (text report: m11)
        add(pruned)
    add(f"completed: {_g(rate(turns['completion_rate']))}")
    add(f"failed: {_g(rate(turns['failure_rate']))}")
    note = derived_note(report)
    if note:
        add(note)
    method = percentile_method([turns["wall_ms"], api["latency_ms"], ttft]
                               + [row["turns"]["wall_ms"] for rows in report["breakdowns"].values() for row in rows
                                  if row.get("turns")])
    if method:
        add(f"percentiles: {_g(method) if not method.startswith('mixed') else method}")
    add(f"turn time p50/p95: {_g(duration(turns['wall_ms']['p50']))} / {_g(duration(turns['wall_ms']['p95']))}")
    add(f"API p50/p95: {_g(duration(api['latency_ms']['p50']))} / {_g(duration(api['latency_ms']['p95']))}")
    add(f"TTFT p50: {_g(duration(ttft['p50']))} ({_g(coverage(ttft))})")
    tok = api["tokens"]
    add(f"tokens: {count(tok['total_tokens'])} (in {count(tok['input_tokens'])}, cache "
        f"{count(tok['cache_read_tokens'])}, out {count(tok['output_tokens'])})")
    add(f"cost: {cost_line(api['cost'])}")
    if report["tools"]:
        add("tools: " + ", ".join(_g(f"{t['tool_name']} {count(t['calls'])}"
                                     + (f" ({count(t['failures'])} failed)" if t["failures"] else ""))
                                  for t in report["tools"][:3]))
    if cov["events_dropped"]:
        add(f"({plural(cov['events_dropped'], 'event')} dropped by the recorder)")
    for dim, rows in report["breakdowns"].items():
        out.append(f"by {dim.replace('_', ' ')}:")
        for row in rows:
            if row["turns"] is None:
                t = row["tool_calls"]
                add(f"{row[dim] or NA}: {_g(plural(t['count'], 'call'))}, {_g(rate_short(t['failure_rate']))} failed",
                    indent="  ")
                continue
            t = row["turns"]
            add(f"{row[dim] or NA}: {_g(plural(t['count'], 'turn'))}, {_g(rate(t['completion_rate']))} completed, "
                f"p95 {_g(duration(t['wall_ms']['p95']))}", indent="  ")
    used = legend("\n".join(out))
    if used:
        add(used)
    return "\n".join(out)
