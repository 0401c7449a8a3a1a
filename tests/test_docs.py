"""Docs that cannot drift: every generated example in docs/cli.md is what the command prints.

``tools/gen_docs.py`` runs each ``$ hermetry …`` block of docs/cli.md on fixed fixtures and
writes the output into the file; this test runs it again and fails when the file and the real
output differ (only how long an import took may change). Fix: ``python tools/gen_docs.py``.
Also: the README's commands exist, and ``python -m hermetry.testing`` (which the docs suggest)
really runs the scripted model server.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "tools" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_docs_are_the_real_output(tmp_path: Path) -> None:
    gen = gen_docs()
    current = (REPO / "docs" / "cli.md").read_text()
    fresh = gen.render_doc(current, tmp_path / "docs")
    assert fresh.count("```console") == current.count("```console")
    if gen.masked(fresh) != gen.masked(current):
        diff = "".join(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), "docs/cli.md",
                                            "real output", n=1))
        pytest.fail(f"docs/cli.md differs from the real output; run `python tools/gen_docs.py`:\n{diff[:6000]}")


def test_every_documented_command_is_generated() -> None:
    """No hand-written hermetry output: each console block starting with `$ hermetry` is generated."""
    gen = gen_docs()
    text = (REPO / "docs" / "cli.md").read_text()
    blocks = [m["cmd"] for m in gen.BLOCK.finditer(text) if not re.search(r"^\$ ", m["out"], re.M)]
    assert blocks and all(re.match(r"(?:[A-Z_]+=\S+ )*hermetry ", cmd) for cmd in blocks), blocks
    assert gen.CHAT.search(text), "the /telemetry example is generated too"


def test_the_parity_table_has_every_row_filled() -> None:
    text = (REPO / "docs" / "cli.md").read_text()
    table = text.split("| `hermes insights` shows |", 1)[1].split("\n\n", 1)[0]
    rows = [r for r in table.splitlines()[2:] if r.startswith("|")]
    wanted = ("Messages", "User messages", "Avg msgs/session", "Active time", "Avg session", "Activity by weekday",
              "Peak hours", "Active days", "Notable: longest", "Notable: most messages", "Notable: most tokens",
              "Notable: most tool calls", "share", "Skills: loads", "Why totals differ")
    for name in wanted:
        assert any(name in r for r in rows), name
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), r


def test_readme_install_line_is_non_interactive() -> None:
    readme = (REPO / "README.md").read_text()
    assert "hermes plugins enable hermetry --no-allow-tool-override" in readme
    from hermes_cli.subcommands import plugins  # the flag exists in the pinned Hermes

    assert "--no-allow-tool-override" in Path(plugins.__file__).read_text()


def test_python_m_hermetry_testing_runs_the_scripted_server(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"content": "Hello from the script.",
                                   "usage": {"prompt_tokens": 12, "completion_tokens": 3}}]))
    proc = subprocess.Popen([sys.executable, "-m", "hermetry.testing", "--script", str(script), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert m, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        body = json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(m.group(1) + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        reply = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert reply["choices"][0]["message"]["content"] == "Hello from the script."
        assert reply["usage"]["prompt_tokens"] == 12 and reply["usage"]["completion_tokens"] == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
