"""A throwaway PostgreSQL server for tests and benchmarks: ``with PostgresServer() as pg: pg.url()``.

It runs Debian's PostgreSQL binaries (``apt-get install postgresql``; tools/install-engines.sh) in
a temporary folder, listening on 127.0.0.1 only, on a free port, with ``trust`` authentication —
fine for a server that lives as long as one test session and listens on loopback. As root the
server runs as the ``postgres`` user (PostgreSQL refuses to run as root). ``stop()`` and
``start()`` can be called in between, to take the database away from a running writer and give it
back on the same port with the same data.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType


class EngineMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb``/``pg_ctl``: ``$HERMETRY_PG_BINDIR``, Debian's, or PATH."""
    env = os.environ.get("HERMETRY_PG_BINDIR", "").strip()
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder (see the module docstring)."""

    def __init__(self, *, port: int | None = None, durable: bool = False) -> None:
        bindir = find_bindir()
        if bindir is None or not (bindir / "initdb").exists():
            raise EngineMissing(
                "PostgreSQL server binaries not found (apt-get install postgresql, or set HERMETRY_PG_BINDIR)"
            )
        self.bindir = bindir
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hermetry-pg-"))
        self.data = self.dir / "data"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "postgres")
        self._initialized = False
        self.running = False
        #: False (tests): no fsync at all. True (benchmarks): fsync on, commits acknowledged before
        #: they are flushed — the durability of SQLite's WAL with synchronous=NORMAL.
        self.durable = durable

    # -- lifecycle --------------------------------------------------------------------------

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = (self.dir / "log").read_text()[-2000:]
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> PostgresServer:
        if not self._initialized:
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      *(() if self.durable else ("--no-sync",)), "-E", "UTF8", "--locale=C")
            self._initialized = True
        durability = "-c synchronous_commit=off" if self.durable else \
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} {durability} -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "start")
        self.running = True
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are cut), keeping its data."""
        if self.running:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.destroy()

    # -- databases --------------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
