"""Shared helpers: percentiles, bootstrap intervals, memory, child processes, machine facts.

Every benchmark returns a dict ``{"rows": [...], "notes": [...], "raw": {...}}``; a row is one
line of the results table (see :func:`row`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CACHE = BENCH_DIR / ".cache"


@dataclass(frozen=True)
class Options:
    quick: bool = False
    verbose: bool = True


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_TMPDIRS: list[Path] = []


def tmpdir(prefix: str) -> Path:
    """A scratch folder, removed by :func:`cleanup` when the benchmark ends (``BENCH_KEEP=1`` keeps it)."""
    path = Path(tempfile.mkdtemp(prefix=f"hermetry-bench-{prefix}-"))
    _TMPDIRS.append(path)
    return path


def cleanup() -> None:
    import shutil

    if os.environ.get("BENCH_KEEP"):
        return
    while _TMPDIRS:
        shutil.rmtree(_TMPDIRS.pop(), ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------

def pct(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def summarize_ns(samples_ns: Sequence[int]) -> dict[str, float]:
    """Latency samples (ns) → µs summary: median, p99, p99.9, max, mean, n."""
    s = sorted(samples_ns)
    n = len(s)
    return {
        "n": n,
        "median_us": pct(s, 50) / 1000,
        "p99_us": pct(s, 99) / 1000,
        "p999_us": pct(s, 99.9) / 1000,
        "max_us": (s[-1] / 1000) if s else math.nan,
        "mean_us": (sum(s) / n / 1000) if n else math.nan,
    }


def median(values: Sequence[float]) -> float:
    return pct(sorted(values), 50)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def bootstrap_ci(
    values: Sequence[float], stat: Callable[[Sequence[float]], float] = mean, *,
    n: int = 5000, level: float = 0.95, seed: int = 7,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(values)``."""
    rng = random.Random(seed)
    k = len(values)
    if k < 2:
        return (math.nan, math.nan)
    stats = sorted(stat([values[rng.randrange(k)] for _ in range(k)]) for _ in range(n))
    lo = stats[int((1 - level) / 2 * n)]
    hi = stats[min(n - 1, int((1 + level) / 2 * n))]
    return lo, hi


# ---------------------------------------------------------------------------------------------
# Memory and processes
# ---------------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return math.nan


@dataclass
class ChildRun:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system of the child (and the children it waited for)
    peak_rss_mb: float


def run_child(argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
              timeout: float = 600) -> ChildRun:
    """Run a process to completion; wall time, CPU time and peak RSS come from ``wait4``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_s=wall,
            cpu_s=ru.ru_utime + ru.ru_stime,
            peak_rss_mb=ru.ru_maxrss / 1024,
        )


def run_python_json(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> tuple[dict[str, Any], ChildRun]:
    """Run ``python -m bench.<worker> ARGS`` and parse the JSON object on its last stdout line."""
    child = run_child([sys.executable, *args], env=env or child_env(), cwd=REPO, timeout=timeout)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({child.returncode}):\n{child.stderr[-3000:]}")
    lines = [ln for ln in child.stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1]), child


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measured child: no HERMETRY_/HERMES_ settings of the caller, and
    bytecode cached (in ``bench/.cache/pycache``) as an installed package has it — a session
    that sets ``PYTHONDONTWRITEBYTECODE`` would otherwise make every start-up recompile hermetry."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERMETRY_", "HERMES_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# Result rows
# ---------------------------------------------------------------------------------------------

def row(
    bench: str, measure: str, value: str, *, baseline: str = "", ratio: str = "", target: str = "",
    ok: bool | None = None, memory: str = "", key: str | None = None, **numbers: Any,
) -> dict[str, Any]:
    """One line of the results table. ``ok``: True ✓, False ✗, None (no target) blank."""
    return {
        "bench": bench, "measure": measure, "value": value, "baseline": baseline, "ratio": ratio,
        "target": target, "ok": ok, "memory": memory, "key": key or measure, "numbers": numbers,
    }


def fmt_us(v: float) -> str:
    if v != v:  # NaN
        return "–"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    if v >= 100:
        return f"{v:.0f} µs"
    if v >= 10:
        return f"{v:.1f} µs"
    return f"{v:.2f} µs"


def fmt_s(v: float) -> str:
    if v != v:
        return "–"
    if v < 1:
        return f"{v * 1000:.0f} ms"
    return f"{v:.2f} s"


def fmt_rate(v: float) -> str:
    return f"{v:,.0f}/s"


def fmt_mb(v: float) -> str:
    return "–" if v != v else f"{v:.0f} MB"


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = math.nan
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_gb = int(line.split()[1]) / 2**20
                    break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    except Exception:
        rev, dirty = "", False
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "hermetry": _version("hermetry"),
        "hermes_agent": _version("hermes-agent"),
        "opentelemetry_sdk": _version("opentelemetry-sdk"),
        "git": rev + ("+dirty src" if dirty else ""),
        "switch_interval_ms": sys.getswitchinterval() * 1000,
    }
