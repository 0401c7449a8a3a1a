"""Real broken environments for tests: a full disk and read-only media, as small tmpfs mounts.

They need root (or CAP_SYS_ADMIN) to mount; where that is not allowed, :class:`MountRefused`
says so and the caller decides (hermetry's own tests skip with the reason, docs/reliability.md).
Every mount is unmounted when its ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


class MountRefused(Exception):
    """This machine does not let the test mount a tmpfs (not root, or in a restricted container)."""


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """Mount a fresh tmpfs of ``size`` at ``path`` (created) for the block; unmount after."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise MountRefused(done.stderr.strip() or f"mount exited {done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    """Make a mount from :func:`tmpfs` read-only (what a read-only disk or snapshot looks like)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


def fill(path: Path) -> int:
    """Fill the filesystem holding ``path`` (a folder) until writes fail with ENOSPC; returns
    the bytes written into the filler file ``path/.filler``."""
    written = 0
    chunk = b"\0" * 65536
    with open(path / ".filler", "wb", buffering=0) as fh:
        while True:
            try:
                written += fh.write(chunk) or 0
            except OSError:
                break
        small = b"\0" * 512
        while True:
            try:
                written += fh.write(small) or 0
            except OSError:
                break
    return written


def free(path: Path) -> None:
    """Undo :func:`fill`."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path / ".filler")
