"""Where a drop count goes when the store cannot take it: a small fallback file, adopted later.

The recorder's ledger (events written, events dropped, per process run) normally lives in the
store's ``recorder_runs`` table. When a process ends while its store cannot be written (a full
disk, a read-only or corrupt file, a locked file that never freed), the events it still held
are lost — and so would be the count of them. Instead it appends one JSON line to the first of
these that can be written:

1. ``<telemetry file>.drops`` (beside the telemetry file), else
2. ``$TMPDIR/hermetry-<uid>/<hash of the telemetry file's path>.drops`` (another filesystem,
   usually, when the disk holding the telemetry file is full).

Both are created 0600 in 0700 folders. The next process whose store opens the file adopts the
lines into ``recorder_runs`` (the larger count wins for a run; a run's own later flush wins
over an earlier line) and removes them. ``hermetry doctor`` shows lines not adopted yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

SUFFIX = ".drops"


def fallback_paths(db_path: str | os.PathLike[str]) -> list[Path]:
    """The fallback files for one telemetry file, in the order they are tried."""
    p = Path(db_path)
    try:
        key = str(p.resolve())
    except OSError:
        key = str(p.absolute())
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return [p.with_name(p.name + SUFFIX), _shared_folder() / f"{digest}{SUFFIX}"]


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _private_dir(folder: Path) -> None:
    """Create the shared-temp fallback folder, or check an existing one is ours alone.

    ``$TMPDIR/hermetry-<uid>`` has a predictable name in a folder every local user can write:
    a folder (or a link) someone else put there is refused, so a ledger line never lands in a
    file another user chose.
    """
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    st = os.lstat(folder)
    uid = os.getuid() if hasattr(os, "getuid") else st.st_uid
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(1, "not a private folder of this user (owner, mode or a link)", str(folder))


def _shared_folder() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"hermetry-{uid}"


def _trusted(path: Path) -> bool:
    """A ledger file that may be read: beside the telemetry file, or in our private temp folder."""
    if path.parent != _shared_folder():
        return True
    try:
        if not path.parent.exists():
            return False
        _private_dir(path.parent)
        return not path.is_symlink()
    except OSError:
        return False


def _append(path: Path, line: str) -> None:
    if path.parent == _shared_folder():
        _private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    existed = path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
    try:
        data = line.encode()
        if os.write(fd, data) != len(data):
            raise OSError(28, "short write")
    except OSError:
        if not existed and os.fstat(fd).st_size == 0:
            with contextlib.suppress(OSError):
                os.remove(path)  # leave no empty file on a full disk
        raise
    finally:
        os.close(fd)


class DropLedger:
    """The fallback drop ledger of one telemetry file."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.db_path = Path(db_path)
        self.paths = fallback_paths(db_path)

    def save(self, record: dict[str, Any]) -> Path | None:
        """Append one run's ledger line; the path it went to, or None if none could be written."""
        line = json.dumps({**record, "db": str(self.db_path), "at_ms": time.time() * 1000},
                          separators=(",", ":"), default=str) + "\n"
        for path in self.paths:
            try:
                _append(path, line)
                return path
            except OSError:
                continue
        return None

    def pending(self) -> list[dict[str, Any]]:
        """The lines not adopted yet (the latest line of each run)."""
        latest: dict[str, dict[str, Any]] = {}
        for path in self.paths:
            if not _trusted(path):
                continue
            for record in _read(path):
                run_id = str(record.get("run_id"))
                if run_id not in latest or record.get("at_ms", 0) >= latest[run_id].get("at_ms", 0):
                    latest[run_id] = record
        return sorted(latest.values(), key=lambda r: r.get("at_ms", 0))

    def take(self) -> tuple[list[dict[str, Any]], list[tuple[Path, Path]]]:
        """Claim the pending lines for adoption: (records, [(claimed file, original path)]).

        Call :meth:`done` after they are committed, or :meth:`give_back` if that failed.
        """
        claimed: list[tuple[Path, Path]] = []
        for path in self.paths:
            if not path.exists() or not _trusted(path):
                continue
            target = path.with_name(f"{path.name}.adopting-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(path, target)
            except OSError:
                continue
            claimed.append((target, path))
        latest: dict[str, dict[str, Any]] = {}
        for target, _ in claimed:
            for record in _read(target):
                run_id = str(record.get("run_id"))
                if run_id not in latest or record.get("at_ms", 0) >= latest[run_id].get("at_ms", 0):
                    latest[run_id] = record
        return list(latest.values()), claimed

    @staticmethod
    def done(claimed: list[tuple[Path, Path]]) -> None:
        for target, _ in claimed:
            with contextlib.suppress(OSError):
                os.remove(target)

    @staticmethod
    def give_back(claimed: list[tuple[Path, Path]]) -> None:
        for target, original in claimed:
            try:
                data = target.read_text(encoding="utf-8")
                _append(original, data)
                os.remove(target)
            except OSError:
                pass


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("run_id"), str):
            records.append(record)
    return records
