"""Files the suite writes: atomically, with the usual permissions, into folders checked before any work.

- ``write_atomically(path, write)``: a reader sees the old version or the new one, never half of one. The
  temporary file is named ``.<name>.<pid>-<random>.tmp`` beside ``path``; a write killed before its rename
  (kill -9, power loss) leaves it behind, and the next write into that folder removes every such file whose
  process is gone (``remove_stale_temporaries``).
- The file gets the permissions any new file gets (0666 less the umask: 0644 with the usual umask 022), not
  the 0600 of a bare ``tempfile.mkstemp``.
- ``check_output_folder(folder)``: a command calls it on each output folder before it trains anything, so a
  bad path (``/proc/x``, an existing file, a read-only folder) fails in a second, not after the run.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

from experiments.errors import OutputError

TEMPORARY = re.compile(r"^\..+\.(\d+)-[^.]+\.tmp$")  # .<name>.<pid>-<random>.tmp, as write_atomically names them


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    try:  # Linux tells the umask without changing it
        status = Path("/proc/self/status").read_text()
        umask = int(re.search(r"^Umask:\s*([0-7]+)", status, re.M).group(1), 8)
    except (OSError, AttributeError):  # elsewhere, reading it means setting it: put it back at once
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder: Path | str) -> list[Path]:
    """Delete the temporary files of ``write_atomically`` in ``folder`` whose writing process no longer exists."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        match = TEMPORARY.match(path.name)
        if match and not process_exists(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_atomically(path: Path | str, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a fresh temporary file beside ``path``, then move it onto ``path`` (``os.replace``).

    On any error the old file stays as it was and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, new_file_mode())
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """``df`` as CSV (no index column) at ``path``, written atomically."""
    return write_atomically(path, lambda tmp: df.to_csv(tmp, index=False))


def check_output_folder(folder: Path | str, option: str = "--out") -> Path:
    """Make sure files can be written into ``folder`` (created later if missing), else raise ``OutputError``.

    Tried for real: the missing folders are created, a file is written in the folder and removed, and the
    folders this created are removed again, so the check leaves the file system as it found it.
    ``option`` names where the folder came from in the message (``--out``, ``--results``).
    """
    if not str(folder).strip():  # Path("") is the current folder: never what an empty --out meant
        raise OutputError(f"{option} is empty; give a folder (it is created if missing)")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is an existing file, not a folder; give a folder (it is created "
                          f"if missing)")
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{option} {folder} cannot be written ({err.strerror or err}); choose a folder you can "
                          f"write to") from err
    finally:
        for path in missing:  # innermost first
            try:
                path.rmdir()
            except OSError:
                pass
    return folder
