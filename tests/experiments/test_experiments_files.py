"""experiments.files: atomic writes with the usual permissions, stale temporaries removed, output folders checked."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from experiments.errors import OutputError, UserError
from experiments.files import check_output_folder, remove_stale_temporaries, write_atomically, write_csv


@pytest.fixture
def umask():
    """Set the umask for one test, then put the old one back."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_0666_less_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    path = write_csv(pd.DataFrame({"a": [1]}), tmp_path / "runs.csv")
    assert path.stat().st_mode & 0o777 == mode
    write_csv(pd.DataFrame({"a": [2]}), path)  # replacing a file too
    assert path.stat().st_mode & 0o777 == mode


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writes_temporary_file_is_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".runs.csv.{dead_pid()}-abc123.tmp"  # what a write killed before its rename leaves
    live = tmp_path / f".epochs.csv.{os.getpid()}-def456.tmp"  # a write in flight in a live process
    other = tmp_path / ".notes.tmp"  # not one of ours
    for path in (stale, live, other):
        path.write_text("partial")
    write_atomically(tmp_path / "plan.csv", lambda tmp: tmp.write_text("x\n"))
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "plan.csv"])
    assert remove_stale_temporaries(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("old\n")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(path, fail)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


@pytest.mark.parametrize("folder, message", [
    ("/proc/x", "--out /proc/x cannot be written"),  # a place nobody, not even root, can create a folder
    ("/proc/x/y/z", "--out /proc/x/y/z cannot be written"),
    ("FILE", "--out {tmp}/FILE is an existing file, not a folder"),
    ("FILE/sub", "--out {tmp}/FILE/sub cannot be written \\(Not a directory\\)"),
])
def test_unwritable_output_folders_are_refused(tmp_path, folder, message):
    (tmp_path / "FILE").write_text("a file")
    folder = folder.replace("FILE", str(tmp_path / "FILE"))
    with pytest.raises(OutputError, match=message.format(tmp=tmp_path)) as err:
        check_output_folder(folder)
    assert isinstance(err.value, UserError)


def test_checking_a_new_folder_leaves_nothing_behind(tmp_path):
    assert check_output_folder(tmp_path / "a" / "b" / "c", "--results") == tmp_path / "a" / "b" / "c"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_output_folder(tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []
