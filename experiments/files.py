"""Writing a file so that a reader sees the old version or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd


def write_atomically(path: Path | str, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a fresh temporary file beside ``path``, then move it onto ``path`` (``os.replace``).

    On any error the old file stays as it was and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """``df`` as CSV (no index column) at ``path``, written atomically."""
    return write_atomically(path, lambda tmp: df.to_csv(tmp, index=False))
