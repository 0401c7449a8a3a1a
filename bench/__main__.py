"""``python -m bench`` (``make bench``): hermetry's benchmarks, each next to baselines measured in the same run.

    python -m bench                       # everything (~10 minutes on 2 cores; fixtures cached in bench/.cache/)
    python -m bench --quick               # a 1–2 minute smoke version
    python -m bench --only hook,ingest    # some of: hook, ingest, hermes, import, query, window, dashboard, fleet, views, metrics, prune
    python -m bench --json out.json       # also write every number as JSON
    python -m bench --update-docs         # put the table into docs/benchmarks.md
    python -m bench --from-json out.json --update-docs   # re-render a saved run

Each benchmark runs in its own fresh Python process (so its time and peak memory are its own)
and reports rows: a figure, the baselines it is compared with, the ratio, the target, ✓/✗.
Nothing here is a test: ``pytest`` never collects bench/ (``testpaths = ["tests"]``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import REPO, Options, child_env, fmt_mb, log, machine, run_child

BENCHES: dict[str, tuple[str, str]] = {
    "hook": ("bench.hook", "1 · hook cost on the agent's thread"),
    "ingest": ("bench.ingest", "2 · sustained ingest until durable"),
    "hermes": ("bench.hermes_overhead", "3 · real Hermes overhead"),
    "import": ("bench.backfill_import", "5 · import scale"),
    "query": ("bench.query", "4 · query scale"),
    "window": ("bench.query_window", "4b · query scale: a 2-day window, partial first/last hours"),
    "dashboard": ("bench.dashboard", "6 · dashboard first view"),
    "fleet": ("bench.fleet", "7 · fleet ingest into PostgreSQL"),
    "views": ("bench.views", "8 · the long views (sessions, show)"),
    "metrics": ("bench.metrics_serve", "9 · metrics serve: the cost of a pass"),
    "prune": ("bench.prune", "10 · prune: rows/s, transactions, a writer beside it"),
}
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def _verdict(ok: Any) -> str:
    if ok is True:
        return "✓"
    if ok is False:
        return "✗"
    if ok == "inconclusive":
        return "~"
    return ""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run {m['date']} · `python -m bench{' --quick' if results['quick'] else ''}` · {m['cpu']}, "
        f"{m['cores']} cores, {m['memory_gb']} GB, {m['os']} · Python {m['python']}, SQLite {m['sqlite']} · "
        f"hermetry {m['hermetry']} (git {m['git']}), hermes-agent {m['hermes_agent']}, "
        f"opentelemetry-sdk {m['opentelemetry_sdk']} · GIL switch interval {m['switch_interval_ms']:.0f} ms · "
        f"total {results['seconds'] / 60:.1f} min",
        "",
        "| | Measure | hermetry | Baselines (same run) | Ratio | Target | | Memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results["benches"].items():
        if "error" in res:
            lines.append(f"| {name} | **failed** | {_cell(res['error'][-300:])} | | | | ✗ | |")
            continue
        for r in res["rows"]:
            lines.append("| " + " | ".join(_cell(x) for x in (
                name, r["measure"], r["value"], r["baseline"], r["ratio"], r["target"], _verdict(r["ok"]),
                r["memory"])) + " |")
    lines.append("")
    for name, res in results["benches"].items():
        notes = [n for n in res.get("notes", []) if n]
        peak = res.get("process_peak_rss_mb")
        if peak:
            notes.append(f"peak RSS of the benchmark process: {fmt_mb(peak)}; {res.get('process_seconds', 0):.0f} s")
        load = res.get("load_1m")
        if load:
            notes.append(f"machine load (1-minute average) {load[0]:.1f} at its start, {load[1]:.1f} at its end")
        if notes:
            lines.append(f"*{name}*: " + " · ".join(notes))
            lines.append("")
    return "\n".join(lines)


def _keep_others(old: str, table: str, ran: list[str]) -> str:
    """A subset's table, with the rows and notes of the benchmarks it did not run kept from the
    table already in the docs — and a line saying which run those come from."""
    old_lines = old.strip("\n").splitlines()
    if not old_lines:
        return table
    kept_rows = [ln for ln in old_lines if ln.startswith("| ") and not ln.startswith("| |")
                 and ln.split("|")[1].strip() not in ran]
    kept_notes = [ln for ln in old_lines if ln.startswith("*") and ln.split("*")[1] not in ran
                  and not ln.startswith("*Rows of ")]
    if not kept_rows:
        return table
    others = sorted({ln.split("|")[1].strip() for ln in kept_rows})
    header = old_lines[0] if old_lines[0].startswith("Run ") else ""
    previous = header.split(" · ")[0].removeprefix("Run ") if header else "an earlier run"
    if old_lines and old_lines[0].startswith("*Rows of "):
        previous = ""
    lines = table.splitlines()
    body_end = max(i for i, ln in enumerate(lines) if ln.startswith("|")) + 1
    # rows already carried from an older run keep that run's line; the rest are the previous run's
    notes, dated = [], set()
    for ln in (ln for ln in old_lines if ln.startswith("*Rows of ")):
        head, _, tail = ln.partition("*: ")
        names = [n for n in head.removeprefix("*Rows of ").split(", ") if n in others]
        if names:
            notes.append(f"*Rows of {', '.join(names)}*: {tail}")
            dated.update(names)
    fresh = [n for n in others if n not in dated]
    if fresh:
        notes.append(f"*Rows of {', '.join(fresh)}*: from the run of {previous or 'an earlier run'}, not rerun by this one.")
    rest = list(lines[body_end:])
    while rest and not rest[-1].strip():
        rest.pop()
    spaced = [x for n in [*notes, *kept_notes] for x in (n, "")]
    return "\n".join([*lines[:body_end], *kept_rows, *rest, "", *spaced]).rstrip("\n") + "\n"


def update_docs(table: str, ran: list[str] | None = None) -> None:
    """Put the table between the markers of docs/benchmarks.md. After a subset (``--only``), the
    rows of the benchmarks it did not run stay, marked as from their own run."""
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    old, tail = rest.split(END, 1)
    if ran is not None and set(ran) != set(BENCHES):
        table = _keep_others(old, table, ran)
    DOC.write_text(f"{head}{START}\n{table.rstrip()}\n{END}{tail}")
    log(f"updated {DOC.relative_to(REPO)}")


def _load() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): a benchmark on a
    machine other work keeps busy measures that work too, so every run says what it ran beside."""
    try:
        import os

        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _child(name: str, quick: bool) -> int:
    """Run one benchmark in this process and print its result as JSON (last line)."""
    import importlib

    from bench._common import cleanup

    module = importlib.import_module(BENCHES[name][0])
    try:
        res = module.run(Options(quick=quick))
    finally:
        cleanup()
    sys.stdout.write("\n" + json.dumps(res, default=str) + "\n")
    sys.stdout.flush()
    import os

    os._exit(0)  # background threads of baselines (exporters, writers) must not delay the exit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 1–2 minute smoke version")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the results table as Markdown")
    p.add_argument("--update-docs", action="store_true", help=f"put the table into {DOC.relative_to(REPO)}")
    p.add_argument("--from-json", metavar="PATH", help="do not run: render (and --update-docs) a saved --json result")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        table = markdown(saved)
        print(table)
        if args.update_docs:
            update_docs(table, list(saved["benches"]))
        return 0
    names = list(BENCHES)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in BENCHES]
        if unknown:
            p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
        names = [n for n in names if n in wanted]
    t0 = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "benches": {}}
    for name in names:
        log(f"=== {BENCHES[name][1]} ===")
        argv_child = [sys.executable, "-m", "bench", "--child", name] + (["--quick"] if args.quick else [])
        load_before = _load()
        child = run_child(argv_child, env=child_env(), cwd=REPO, timeout=3600)
        load_after = _load()
        sys.stderr.write(child.stderr)
        try:
            if child.returncode != 0:
                raise RuntimeError(f"exit {child.returncode}")
            res = json.loads([ln for ln in child.stdout.splitlines() if ln.strip()][-1])
        except Exception as exc:
            log(f"{name} failed: {exc}")
            res = {"error": f"{exc}: {child.stderr[-2000:]}", "rows": []}
        res["process_peak_rss_mb"] = child.peak_rss_mb
        if load_before is not None and load_after is not None:
            res["load_1m"] = [load_before, load_after]
        res["process_seconds"] = child.wall_s
        results["benches"][name] = res
    results["seconds"] = time.perf_counter() - t0
    table = markdown(results)
    print(table)
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / ("latest-quick.json" if args.quick else "latest.json")).write_text(json.dumps(results, indent=1, default=str))
    (out_dir / ("latest-quick.md" if args.quick else "latest.md")).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.update_docs:
        update_docs(table, names)
    failed = [n for n, r in results["benches"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
