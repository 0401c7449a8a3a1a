"""3 · Real Hermes overhead: the same scripted ``hermes -z`` run with the plugin enabled vs disabled.

A :class:`~hermetry.testing.ScriptedServer` (zero delays) answers every run the same way: the
model calls the ``terminal`` tool twice, then answers — three model API calls and two tool
calls in one ``hermes -z`` turn. Three Hermes homes are identical but for their plugins:

* ``off``: no plugin (:class:`~hermetry.testing.hermes.HermesHome` with ``plugin=False``);
* ``noop``: a directory plugin that registers the same hooks as hermetry with callbacks that do
  nothing — what *any* hook-based plugin costs, because Hermes builds hook payloads (e.g. a
  sanitized copy of the response for ``post_api_request``) only when a hook is registered;
* ``on``: hermetry.

Each round runs the three in a rotating order (all six permutations in turn) so that drift on
the machine hits every side alike; each round gives one paired difference per comparison.
Reported: mean and median wall time, the mean paired difference with a 95 % bootstrap
interval (the noise band), the same for the process's CPU time (user + system, from
``wait4``), and peak RSS.

What the plugin costs inside the process (import + register on Hermes' main thread, the first
write, the flush before ``os._exit``) is measured separately in a child that imports Hermes as
``hermes -z`` does, to explain the difference.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from bench._common import (
    Options,
    bootstrap_ci,
    child_env,
    fmt_mb,
    fmt_s,
    log,
    mean,
    median,
    row,
    run_child,
    run_python_json,
    tmpdir,
)

PROMPT = "Run `echo hermetry-bench` twice with the terminal tool, then say done."
ANSWER = "All done."


def _route(request: Any) -> Any:
    from hermetry.testing import ScriptedReply, ScriptedToolCall, ScriptedUsage

    messages = (request.body or {}).get("messages") or []
    tool_results = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "tool")
    if tool_results < 2:
        return ScriptedReply(
            content=None,
            tool_calls=[ScriptedToolCall("terminal", {"command": "echo hermetry-bench"})],
            usage=ScriptedUsage(1500 + 200 * tool_results, 30, cached_tokens=1000, reasoning_tokens=8),
        )
    return ScriptedReply(content=ANSWER, usage=ScriptedUsage(1900, 12, cached_tokens=1400))


NOOP_PLUGIN = "hermetry_bench_noop"


def _noop_plugin(home: Path, hooks: list[str]) -> None:
    """A directory plugin registering ``hooks`` with callbacks that do nothing."""
    d = home / "plugins" / NOOP_PLUGIN
    d.mkdir(parents=True, exist_ok=True)
    (d / "plugin.yaml").write_text(f"name: {NOOP_PLUGIN}\nversion: 0.0.0\ndescription: benchmark baseline\n")
    (d / "__init__.py").write_text(
        "def _noop(**kwargs):\n    return None\n\n\n"
        "def register(ctx):\n"
        f"    for name in {hooks!r}:\n"
        "        ctx.register_hook(name, _noop)\n"
    )


def _run(home: Any) -> Any:
    from hermetry.testing.hermes import hermes_executable

    return run_child([hermes_executable(), "-z", PROMPT, "--provider", "custom", "-m", home.model],
                     env=home.env(), cwd=home.root, timeout=180)


def _paired(on: list[float], off: list[float]) -> dict[str, float]:
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    base = mean(off)
    lo, hi = bootstrap_ci(diffs)
    return {
        "on_mean": mean(on), "off_mean": base, "on_median": median(on), "off_median": median(off),
        "diff_mean": mean(diffs), "diff_median": median(diffs), "ci_lo": lo, "ci_hi": hi,
        "rel_mean": mean(diffs) / base, "rel_ci_lo": lo / base, "rel_ci_hi": hi / base,
        "rel_median": (median(on) - median(off)) / median(off),
    }


def _verdict(stats: dict[str, float], limit: float = 0.01) -> bool | str:
    if stats["rel_ci_hi"] <= limit:
        return True
    if stats["rel_ci_lo"] > limit:
        return False
    return "inconclusive" if stats["rel_mean"] <= limit else False


def run(opts: Options) -> dict[str, Any]:
    from hermetry.testing import ScriptedServer
    from hermetry.testing.hermes import HermesHome

    rounds = int(os.environ.get("BENCH_HERMES_ROUNDS", 3 if opts.quick else 16))
    root = tmpdir("hermes")
    sides = ("on", "noop", "off")
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    rss: dict[str, list[float]] = {k: [] for k in sides}
    failures: list[str] = []
    from hermetry.sources.hermes.hooks import HermesCapture

    class _Discard:
        def submit(self, item: Any) -> None:
            pass

        def nudge(self) -> None:
            pass

    hook_names = sorted(HermesCapture(_Discard()).callbacks())  # type: ignore[arg-type]
    orders = list(itertools.permutations(sides))
    with ScriptedServer(route=_route) as srv:
        homes = {
            "on": HermesHome(root / "on", srv.base_url),
            "noop": HermesHome(root / "noop", srv.base_url, config={"plugins": {"enabled": [NOOP_PLUGIN]}}),
            "off": HermesHome(root / "off", srv.base_url, plugin=False),
        }
        _noop_plugin(homes["noop"].root, hook_names)
        log("hermes: warm-up run on each side")
        for side in sides:
            r = _run(homes[side])
            if r.returncode != 0 or ANSWER not in r.stdout:
                raise RuntimeError(f"hermes -z failed ({side}): {r.stdout[-500:]} {r.stderr[-2000:]}")
        log(f"hermes: {rounds} rounds × 3 sides (~{rounds * 3 * 3.2:.0f} s)")
        for i in range(rounds):
            for side in orders[i % len(orders)]:
                r = _run(homes[side])
                if r.returncode != 0 or ANSWER not in r.stdout:
                    failures.append(f"{side}: rc={r.returncode} {r.stderr[-300:]}")
                wall[side].append(r.wall_s)
                cpu[side].append(r.cpu_s)
                rss[side].append(r.peak_rss_mb)
        requests = len(srv.chat_requests())
    recorded = _recorded(homes["on"].telemetry_db)
    w = _paired(wall["on"], wall["off"])
    c = _paired(cpu["on"], cpu["off"])
    wn = _paired(wall["on"], wall["noop"])
    cn = _paired(cpu["on"], cpu["noop"])
    nw = _paired(wall["noop"], wall["off"])
    log(f"hermes: wall on {w['on_mean']:.3f} s noop {mean(wall['noop']):.3f} s off {w['off_mean']:.3f} s; "
        f"on-off {w['rel_mean'] * 100:+.2f}% [{w['rel_ci_lo'] * 100:+.2f}, {w['rel_ci_hi'] * 100:+.2f}]; "
        f"on-noop {wn['rel_mean'] * 100:+.2f}%; noop-off {nw['rel_mean'] * 100:+.2f}%")
    log("hermes: in-process plugin costs")
    inproc, _ = run_python_json(["-m", "bench._workers", "plugin-cost"], env=child_env())

    def pct(v: float) -> str:
        return f"{v * 100:+.1f}%"

    label = f"{rounds} rounds; 3 API calls + 2 tool calls per run"
    rows = [
        row("hermes", f"`hermes -z` wall time, hermetry on vs no plugin ({label})",
            f"{fmt_s(w['on_mean'])} vs {fmt_s(w['off_mean'])} (median {fmt_s(w['on_median'])} vs {fmt_s(w['off_median'])})",
            baseline=f"no plugin {fmt_s(w['off_mean'])} · do-nothing plugin on the same hooks {fmt_s(nw['on_mean'])}",
            ratio=(f"Δ mean {pct(w['rel_mean'])} = {w['diff_mean'] * 1000:+.0f} ms (95% CI {pct(w['rel_ci_lo'])} … "
                   f"{pct(w['rel_ci_hi'])}); Δ median {pct(w['rel_median'])}"),
            target="≤ 1%", ok=_verdict(w),
            memory=f"peak RSS {fmt_mb(median(rss['on']))} vs {fmt_mb(median(rss['off']))}",
            key="hermes.wall", wall=w),
        row("hermes", "… of which Hermes' own cost of calling hooks (do-nothing plugin on the same hooks vs no plugin)",
            f"Δ mean {pct(nw['rel_mean'])} = {nw['diff_mean'] * 1000:+.0f} ms",
            baseline="no plugin, same run",
            ratio=f"95% CI {pct(nw['rel_ci_lo'])} … {pct(nw['rel_ci_hi'])}",
            key="hermes.noop", noop=nw),
        row("hermes", "… and hermetry's own (hermetry vs do-nothing plugin on the same hooks)",
            f"wall Δ mean {pct(wn['rel_mean'])} = {wn['diff_mean'] * 1000:+.0f} ms · CPU Δ mean {pct(cn['rel_mean'])} = {cn['diff_mean'] * 1000:+.0f} ms",
            baseline="do-nothing plugin, same run",
            ratio=f"wall 95% CI {pct(wn['rel_ci_lo'])} … {pct(wn['rel_ci_hi'])}",
            target="≤ 1%", ok=_verdict(wn), key="hermes.own", own=wn, own_cpu=cn),
        row("hermes", "`hermes -z` CPU time (user + system), hermetry on vs no plugin",
            f"{fmt_s(c['on_mean'])} vs {fmt_s(c['off_mean'])}",
            baseline="no plugin, same run",
            ratio=f"Δ mean {pct(c['rel_mean'])} = {c['diff_mean'] * 1000:+.0f} ms (95% CI {pct(c['rel_ci_lo'])} … {pct(c['rel_ci_hi'])})",
            target="≤ 1%", ok=_verdict(c), key="hermes.cpu", cpu=c),
        row("hermes", "inside the process: plugin import + register · first write · flush before exit",
            f"{inproc['register_ms']:.0f} ms · {inproc['first_write_ms']:.0f} ms · {inproc['exit_flush_ms']:.0f} ms",
            baseline=f"Hermes' own imports {inproc['hermes_import_ms']:.0f} ms",
            ratio=f"register = {inproc['register_ms'] / 1000 / w['off_mean'] * 100:.1f}% of a run",
            key="hermes.inproc", inproc=inproc),
    ]
    notes = [
        f"{requests} model requests served; telemetry recorded for the plugin-on home: {recorded}.",
        *(f"failed run: {f}" for f in failures[:5]),
        f"register breakdown: {json.dumps(inproc.get('imports', {}))}",
    ]
    return {"rows": rows, "notes": notes, "raw": {"wall": wall, "cpu": cpu, "rss": rss, "inproc": inproc,
                                                   "hooks": hook_names}}


def _recorded(db: Path) -> dict[str, int]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("sessions", "turns", "api_calls", "tool_calls")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        print(f"no telemetry: {exc}", file=sys.stderr)
        return {}
