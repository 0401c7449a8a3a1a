"""Regenerate the example outputs in docs/cli.md from fixed fixtures (``python tools/gen_docs.py``).

Docs that cannot drift, as sqlite-utils and cog do it: every ```` ```console ```` block whose
first line is ``$ hermetry …`` (optionally ``$ COLUMNS=80 hermetry …`` and ``| head -n N``) is
run — in-process, through ``hermetry.surfaces.cli.main`` — and its output replaces the block's
body (a transcript of several commands, like the errors section's, is left alone: its own test
checks it); a ```` ```text ```` block after ``<!-- docs:chat DAYS DIMENSION -->`` gets the
``/telemetry DAYS DIMENSION`` chat text. ``tests/test_docs.py`` regenerates and fails when
the file differs (``--check`` does the same here).

The fixtures are fixed, so the outputs are too: a synthetic history (``hermetry.testing.history``,
seed 31, 14 days ending 2025-01-15 12:00 UTC), a two-week history whose model calls are 1.6×
slower in the second week (for ``compare``), and a small Hermes ``state.db`` written with
Hermes' own ``SessionDB`` (for ``import``). "Now" is that end of the window, the local time
zone is Europe/Berlin, commands run in /tmp/hermetry-docs, and plain output is 100 columns
unless a block sets ``COLUMNS`` (a test generates in its own folder, which prints as
/tmp/hermetry-docs). The only part of an output that may change between runs is
how long an import took (``in 12 ms``), which the check ignores.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cli.md"
WORKDIR = Path("/tmp/hermetry-docs")
ZONE = "Europe/Berlin"

BLOCK = re.compile(r"```console\n\$ (?P<cmd>[^\n]*)\n(?P<out>.*?)```", re.S)
CHAT = re.compile(r"<!-- docs:chat (?P<days>\S+) (?P<dim>\S+) -->\n```text\n(?P<out>.*?)```", re.S)
#: What may differ between two runs of the same command (masked by --check and the test).
VOLATILE = re.compile(r"in \d[\d.,]* (?:ms|s|min)\b")


def build_fixtures(root: Path) -> None:
    """The fixed histories every example reads (``root`` is recreated)."""
    from hermetry.testing.history import DAY_MS, NOW_MS, Regime, synthetic_history

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    synthetic_history(seed=31, now_ms=NOW_MS, days=14, sessions_per_day=6).record(root / "telemetry.db")
    synthetic_history(seed=7, now_ms=NOW_MS, days=14, sessions_per_day=12,
                      regime=lambda days_ago: Regime(latency_scale=1.6) if days_ago < 7 else Regime(),
                      ).record(root / "two-weeks.db")
    shutil.copy2(root / "telemetry.db", root / "scratch.db")  # for the commands that write (reprice, reconcile)
    (root / "empty.db").touch()  # an empty telemetry file: an empty history
    _state_db(root / "hermes-home", NOW_MS / 1000 - 2 * DAY_MS / 1000)


def _state_db(home: Path, t0: float) -> None:
    """A Hermes home with a small state.db: three sessions written with Hermes' own SessionDB."""
    home.mkdir(parents=True)
    os.environ["HERMES_HOME"] = str(home)
    from hermes_state import SessionDB

    path = home / "state.db"
    db = SessionDB(path)
    calls = [{"id": "call_1", "type": "function", "function": {"name": "terminal", "arguments": "{}"}}]
    plan = (("20250113_093000_a1b2c3", "cli", 0.0, 2), ("20250113_140500_d4e5f6", "telegram", 4.6 * 3600, 3),
            ("20250114_081500_0a1b2c", "cli", 22.75 * 3600, 1))
    for sid, source, offset, turns in plan:
        db.create_session(sid, source, model="anthropic/claude-sonnet-4", model_config=None)
        t = t0 + offset
        for k in range(turns):
            db.append_message(sid, "user", f"request {k}", timestamp=t)
            db.append_message(sid, "assistant", None, tool_calls=calls, timestamp=t + 4)
            db.append_message(sid, "tool", "ok", tool_call_id="call_1", tool_name="terminal", timestamp=t + 5)
            db.append_message(sid, "assistant", "done", timestamp=t + 9)
            t += 60
        db.update_token_counts(sid, input_tokens=1500 * turns, output_tokens=220 * turns, cache_read_tokens=4000 * turns,
                               model="anthropic/claude-sonnet-4", billing_provider="anthropic",
                               api_call_count=2 * turns)
        if source == "telegram":
            db.record_auxiliary_usage(sid, "title_generation", model="anthropic/claude-haiku-4",
                                      billing_provider="anthropic", input_tokens=600, output_tokens=20)
        db.end_session(sid, "cli_close" if source == "cli" else "idle")
    db.close()
    conn = sqlite3.connect(path)
    for sid, _, offset, turns in plan:
        conn.execute("UPDATE sessions SET started_at = ?, ended_at = ? WHERE id = ?",
                     (t0 + offset - 1, t0 + offset + 60 * turns, sid))
        conn.execute("UPDATE session_model_usage SET first_seen = ?, last_seen = ? WHERE session_id = ?",
                     (t0 + offset + 4, t0 + offset + 60 * turns, sid))
    conn.commit()
    conn.close()


@contextlib.contextmanager
def _environment(root: Path) -> Iterator[None]:
    """Fixed "now", zone, width and folder for the commands; everything restored afterwards."""
    from hermetry.surfaces import cli
    from hermetry.testing.history import NOW_MS

    saved_env = {k: os.environ.get(k) for k in ("TZ", "COLUMNS", "HERMES_HOME", "HERMETRY_DB", "HERMETRY_PRICES")}
    saved_now, saved_cwd = cli._now_ms, os.getcwd()
    os.environ["TZ"] = ZONE
    time.tzset()
    for k in ("HERMETRY_DB", "HERMETRY_PRICES"):
        os.environ.pop(k, None)
    os.environ["HERMES_HOME"] = str(root / "hermes-home")
    cli._now_ms = lambda: NOW_MS  # type: ignore[assignment]
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        cli._now_ms = saved_now  # type: ignore[assignment]
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        time.tzset()


def run_command(line: str) -> str:
    """The output of one documented command line (``hermetry …``, env assignments and ``| head``)."""
    from hermetry.surfaces import cli

    command, _, pipe = line.partition(" | ")
    words = shlex.split(command)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words or words[0] != "hermetry":
        raise ValueError(f"not a hermetry command: {line!r}")
    os.environ["COLUMNS"] = env.get("COLUMNS", "100")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(words[1:])
        except SystemExit as exc:  # --help
            code = int(exc.code or 0)
    text = out.getvalue() + err.getvalue()
    here = str(Path.cwd().resolve())
    if here != str(WORKDIR):  # a test's own folder prints as the documented one
        text = text.replace(here, str(WORKDIR))
    if pipe:
        m = re.fullmatch(r"head (?:-n )?-?(\d+)", pipe.strip())
        if not m:
            raise ValueError(f"unsupported pipe in {line!r}")
        text = "".join(text.splitlines(keepends=True)[:int(m.group(1))]) + "…\n"
    if code not in (0, 2):
        raise RuntimeError(f"{line!r} exited {code}:\n{text}")
    return "\n".join(ln.rstrip() for ln in text.rstrip("\n").splitlines()) + "\n"


def chat(days: str, dim: str) -> str:
    from hermetry.analytics.report import Query, insights
    from hermetry.surfaces.render import chat_text
    from hermetry.testing.history import NOW_MS

    report = insights(Path("telemetry.db"), Query.last_days(float(days), now_ms=NOW_MS, group_by=(dim,)))
    return chat_text(report) + "\n"


def render_doc(text: str, root: Path = WORKDIR) -> str:
    """``text`` with every generated block replaced by what the command prints now."""
    build_fixtures(root)
    with _environment(root):
        def block(m: re.Match[str]) -> str:
            cmd = m.group("cmd")
            if not re.match(r"(?:[A-Z_]+=\S+ )*hermetry ", cmd) or re.search(r"^\$ ", m.group("out"), re.M):
                return m.group(0)  # not hermetry, or a transcript of several commands (checked where it is kept)
            return f"```console\n$ {cmd}\n{run_command(cmd)}```"

        text = BLOCK.sub(block, text)
        text = CHAT.sub(lambda m: f"<!-- docs:chat {m['days']} {m['dim']} -->\n```text\n{chat(m['days'], m['dim'])}```",
                        text)
    return text


def masked(text: str) -> str:
    return VOLATILE.sub("in …", text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="do not write: exit 1 when docs/cli.md is out of date")
    args = p.parse_args(argv)
    current = DOC.read_text()
    fresh = render_doc(current)
    if args.check:
        if masked(fresh) != masked(current):
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True),
                                                       "docs/cli.md", "generated"))
            return 1
        return 0
    DOC.write_text(fresh)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
