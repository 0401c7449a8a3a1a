"""The fallback drop ledger in the shared temp folder cannot be pointed at another file.

``$TMPDIR/hermetry-<uid>/<hash>.drops`` has a predictable name in a folder every local user can
write. A link planted there, a folder someone else created, or one others may write, is refused:
no line goes through it, and nothing read through it is adopted as a drop count.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from hermetry.recorder.ledger import DropLedger

RECORD = {"run_id": "r1", "events_dropped": 5, "events_written": 0}


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DropLedger:
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the file beside the telemetry file cannot be written: the temp one is next
    ledger = DropLedger(blocker / "telemetry.db")
    assert ledger.paths[1].parent == shared / f"hermetry-{os.getuid()}"
    return ledger


def test_it_writes_in_a_private_folder_of_its_own(ledger: DropLedger) -> None:
    assert ledger.save(RECORD) == ledger.paths[1]
    folder = ledger.paths[1].parent
    assert (os.stat(folder).st_mode & 0o777) == 0o700 and (os.stat(ledger.paths[1]).st_mode & 0o777) == 0o600
    assert [r["events_dropped"] for r in ledger.pending()] == [5]


def test_a_planted_symlink_is_not_followed(ledger: DropLedger, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    ledger.paths[1].parent.mkdir(mode=0o700)
    ledger.paths[1].symlink_to(victim)
    assert ledger.save(RECORD) is None
    assert victim.read_text() == "precious\n"
    victim.write_text('{"run_id":"fake","events_dropped":999}\n')  # nor is a count read through it
    assert ledger.pending() == []
    assert ledger.take()[0] == []


def test_a_folder_that_is_a_link_is_refused(ledger: DropLedger, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    ledger.paths[1].parent.symlink_to(elsewhere)
    assert ledger.save(RECORD) is None
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("how", ["other user", "group/world writable"])
def test_a_folder_someone_else_made_or_may_write_is_refused(ledger: DropLedger, how: str) -> None:
    folder = ledger.paths[1].parent
    folder.mkdir(mode=0o700)
    if how == "other user":
        if os.getuid() != 0:
            pytest.skip("chown to another user needs root")  # the mode case covers non-root
        os.chown(folder, 65534, 65534)
    else:
        os.chmod(folder, 0o777)
    foreign = folder / ledger.paths[1].name
    foreign.write_text('{"run_id":"fake","events_dropped":999,"at_ms":1}\n')
    assert ledger.save(RECORD) is None
    assert foreign.read_text().count("\n") == 1  # nothing appended
    assert ledger.pending() == []  # and its fake count is not adopted
