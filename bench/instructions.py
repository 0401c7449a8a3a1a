"""Writer-stage instruction counts under valgrind (callgrind): ``python -m bench.instructions``.

On a shared machine wall and CPU times of the same code move by ±50 % from minute to minute;
the number of instructions executed does not (valgrind runs the code on a synthetic CPU). This
counts, per event, the instructions of each writer stage of ``bench/ingest.py`` — normalize
(the hook tuples the real callbacks queue → events), price (the plugin's processor, warmed up),
the SQLite write (``SQLiteStore.write`` in the recorder's 5,000-event batches) — and the SQLite
write of a synthetic history (``hermetry.testing.history``, 500-event batches: sessions of one to
four turns, retries, subagents), for each source tree given, one after another in the same run::

    python -m bench.instructions before=/tmp/before/src now=src

Only the stage itself is counted (callgrind's collection is switched on around it), with
``PYTHONHASHSEED=0``; a second run of the same tree gives the same count within ~0.1 %. Not part
of ``make bench`` (it needs valgrind, and takes ~1 minute per tree). Instructions are not time —
a system call or a cache miss costs more than its instructions — but a change that executes 20 %
fewer of them in the same stage is faster, and this shows it through any noise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("normalize", "price", "store", "store_history")
ITEMS = {"normalize": 3_000, "price": 3_000, "store": 10_000}


def _child(stage: str) -> None:
    """Runs inside valgrind: build the inputs, then run the stage once inside ``functools.reduce``
    (the function callgrind's collection is toggled on)."""
    import functools

    sys.path.insert(0, str(REPO))
    if stage == "store_history":
        from hermetry.stores.sqlite import SQLiteStore
        from hermetry.testing.history import synthetic_history

        events = synthetic_history(seed=3, days=5, sessions_per_day=60).events
        store = SQLiteStore(Path(tempfile.mkdtemp()) / "h.db")
        store.write(events[:10], None)
        todo = events[10:]

        def run(*_: object) -> int:
            for i in range(0, len(todo), 500):
                store.write(todo[i:i + 500], None)
            return 0
        n = len(todo)
    else:
        from bench.ingest import _make_items
        from hermetry.cost.processor import PriceApiCalls

        items = _make_items(None, ITEMS[stage] + 1)
        price = PriceApiCalls.from_file(None)
        [price(e) for it in items[:50] for e in it[0](it)]  # load pricing: not part of any stage
        n = len(items)
        if stage == "normalize":
            def run(*_: object) -> int:
                [e for it in items for e in it[0](it)]
                return 0
        elif stage == "price":
            events = [e for it in items for e in it[0](it)]

            def run(*_: object) -> int:
                [price(e) for e in events]
                return 0
        else:
            from hermetry.stores.sqlite import SQLiteStore

            events = [price(e) for it in items for e in it[0](it)]
            store = SQLiteStore(Path(tempfile.mkdtemp()) / "s.db")
            store.write(events[:1])

            def run(*_: object) -> int:
                for i in range(0, len(events), 5000):
                    store.write(events[i:i + 5000], None)
                return 0
    functools.reduce(run, [0, 0])
    print(json.dumps({"n": n}))


def count(src: str, stage: str) -> tuple[int, int]:
    """(instructions, events or items) of one stage of the tree at ``src``."""
    out = Path(tempfile.mkdtemp()) / "cg.out"
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=os.pathsep.join([src, str(REPO)]))
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=functools_reduce",
         f"--callgrind-out-file={out}", sys.executable, "-m", "bench.instructions", "--child", stage],
        capture_output=True, text=True, env=env, cwd=REPO, check=True)
    shutil.rmtree(out.parent, ignore_errors=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    assert found, proc.stderr[-2000:]
    return int(found.group(1)), int(json.loads(proc.stdout.strip().splitlines()[-1])["n"])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    trees = dict(a.split("=", 1) for a in argv) or {"this": str(REPO / "src")}
    print("stage (instructions per event or queue item) | " + " | ".join(trees))
    for stage in STAGES:
        cells = []
        for src in trees.values():
            ins, n = count(os.path.abspath(src), stage)
            cells.append(f"{ins / n / 1000:.1f}k")
        print(f"{stage} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
