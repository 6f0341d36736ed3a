"""The results of one study: an SQLite database (``study.db``) in the study's folder, exported as tidy CSV files.

The database (the standard library's ``sqlite3``, WAL mode) holds five tables, joined by the ``key`` column:

- ``runs``: one row per run — the full config, final metrics, status (ok / diverged / failed, with a
  ``message`` for a failure), whether it was ``stacked``, the ``host``, wall time;
- ``epochs``: one row per run × epoch;
- ``layers``: one row per run × epoch (0 = at initialisation) × layer;
- ``plan`` (studies only): which run plays which part — study, group, arm, phase, key;
- ``environment`` (studies only): where the runs were trained — name, value.

A finished run lands in one transaction (its runs row with all its epochs and layers rows), so a run is in
the database whole or not at all: a killed study loses at most the runs in flight, and two studies writing
into the same folder at once both land their runs (SQLite's own locking, with a busy timeout, orders their
transactions; no lock file is left behind by a killed process). Columns are added as new fields appear
(a plug-in's option, a later ``RunConfig`` field), so older databases keep working.

The CSV files (``runs.csv``, ``epochs.csv``, ``layers.csv``, ``plan.csv``, ``environment.csv``) are exports
for pandas, the reports and git: written at the end of ``train_pending`` and whenever a folder is loaded
(``report``) — not per run, so a study's bookkeeping stays linear in its runs. A CSV export that was deleted
or damaged since is rebuilt from the database the next time the folder is opened.

A folder with CSV files and no ``study.db`` (the studies under ``results/`` as committed to git) is also
read: ``load`` checks each file (an empty file, a line with too few or too many fields, a missing
column, a missing ``runs.csv`` beside its epochs are ``StoreError``s naming the file and line), and a run
whose epoch or layer rows are incomplete counts as not finished. Opening such a folder with ``Store`` to add
runs imports its CSV files into a new ``study.db`` first.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.errors import UserError
from experiments.files import write_csv
from experiments.config import RunResult

DB_NAME = "study.db"
RUN_TABLES = ("runs", "epochs", "layers")
OTHER_TABLES = ("plan", "environment")
TABLES = RUN_TABLES + OTHER_TABLES
FULL = ("database or disk is full", "disk I/O error")  # SQLite's words for a disk that cannot take more
FINISHED = ("ok", "diverged")  # a failed run is recorded (with its message) but trained again on resume
BUSY_TIMEOUT_S = 60  # how long a write waits for another process's transaction on the same database
REQUIRED = {"runs": ("key", "status", "epochs_done"), "epochs": ("key", "epoch"), "layers": ("key", "epoch", "layer"),
            "plan": ("key",), "environment": ("name", "value")}
ORDER = {"runs": ("key",), "epochs": ("key", "epoch"), "layers": ("key", "epoch", "layer")}
# the columns that hold numbers, checked when a CSV file is read (every column but the key, in epochs and layers)
NUMERIC = {"runs": ("epochs_done", "final_train_loss", "final_val_loss", "final_val_acc", "test_loss", "test_acc"),
           "epochs": ("epoch", "train_loss", "val_loss", "val_acc", "lr", "epoch_time_s", "clip_frac"),
           "layers": ("epoch", "layer", "grad_norm", "dead_frac", "saturated_frac", "act_mean", "act_std")}


class StoreError(UserError):
    """A study folder whose database or CSV files cannot be read as they are."""


@dataclass
class Tables:
    runs: pd.DataFrame
    epochs: pd.DataFrame
    layers: pd.DataFrame
    plan: pd.DataFrame
    environment: pd.DataFrame


# --------------------------------------------------------------------------- CSV files (exports, or a CSV-only folder)
def read_csv(path: Path, name: str) -> pd.DataFrame:
    """One CSV table checked line by line: a damaged file is a ``StoreError`` naming the file and line.

    A missing file is an empty frame (with the table's ``REQUIRED`` columns). Checked: the file is text, not
    empty, has the columns ``REQUIRED`` for its table, every line has as many fields as the header (a line cut
    short by a killed write has fewer), and the columns that hold numbers hold numbers.
    """
    if not path.exists():
        return empty(name)
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise StoreError(f"{path} is empty (line 1 should be the header); {REPAIR}")
            missing = [c for c in REQUIRED[name] if c not in header]
            if missing:
                raise StoreError(f"{path}, line 1: the header lacks the column(s) {', '.join(missing)}; {REPAIR}")
            for fields in reader:
                if fields and len(fields) != len(header):
                    what = "too few (the line is cut short)" if len(fields) < len(header) else "too many"
                    raise StoreError(f"{path}, line {reader.line_num}: {len(fields)} fields where the header has "
                                     f"{len(header)}: {what}; {REPAIR}")
        df = pd.read_csv(path, dtype={"key": str})
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError, csv.Error) as e:
        raise StoreError(f"{path} cannot be read as CSV ({one_line(e)}); {REPAIR}") from None
    for column in NUMERIC.get(name, ()):
        if column in df and not pd.api.types.is_numeric_dtype(df[column]):
            numbers = pd.to_numeric(df[column], errors="coerce")
            line = int(np.flatnonzero((numbers.isna() & df[column].notna()).to_numpy())[0]) + 2
            raise StoreError(f"{path}, line {line}: column {column} holds {df[column].iloc[line - 2]!r}, not a "
                             f"number; {REPAIR}")
    return df


def empty(name: str) -> pd.DataFrame:
    """A table with no rows, as a missing file or table reads: its ``REQUIRED`` columns and nothing else."""
    return pd.DataFrame(columns=list(REQUIRED[name]))


REPAIR = ("restore the file from a copy (or git), or delete the study's CSV files to train its runs again")


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def finished_runs(runs: pd.DataFrame, epochs: pd.DataFrame, layers: pd.DataFrame) -> pd.Series:
    """Which runs rows are whole: an ``ok`` or ``diverged`` run with all its epoch rows (``epochs_done``) and
    the same number of layer rows for each epoch from 0 (initialisation) to its last probed one (the last
    epoch; for a diverged run the one before, where the loss was still finite); a ``failed`` run has none.
    """
    n_epochs = epochs.groupby("key").size() if len(epochs) else pd.Series(dtype=int)
    per_epoch = layers.groupby("key")["epoch"].value_counts().sort_index() if len(layers) else pd.Series(dtype=int)
    keys_with_layers = set(layers["key"]) if len(layers) else set()
    whole = []
    for row in runs.itertuples():
        if row.status not in FINISHED:
            whole.append(True)  # failed: a runs row only
            continue
        done = int(row.epochs_done) if pd.notna(row.epochs_done) else -1
        ok = n_epochs.get(row.key, 0) == done
        if ok:  # no layer rows at all (layers.csv deleted, say) is incomplete too
            counts = per_epoch[row.key] if row.key in keys_with_layers else pd.Series(dtype=int)
            last = len(counts) - 1
            allowed = (done,) if row.status == "ok" else (done - 1, done)
            ok = last in allowed and list(counts.index) == list(range(last + 1)) and counts.nunique() == 1
        whole.append(ok)
    return pd.Series(whole, index=runs.index, dtype=bool)


def load_csv(folder: Path) -> Tables:
    """The tables of a folder's CSV files, checked; runs with incomplete rows (and orphan rows) left out."""
    tables = {name: read_csv(folder / f"{name}.csv", name) for name in TABLES}
    runs = tables["runs"]
    if not (folder / "runs.csv").exists():
        orphans = [f"{name}.csv" for name in ("epochs", "layers") if (folder / f"{name}.csv").exists()]
        if orphans:
            raise StoreError(f"{folder / 'runs.csv'} is missing beside {' and '.join(orphans)}: the runs they "
                             f"belong to are unknown; restore runs.csv, or delete the study's CSV files to train "
                             f"its runs again")
    if len(runs):
        bad = runs["key"].isna() | ~runs["status"].isin(FINISHED + ("failed",))
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise StoreError(f"{folder / 'runs.csv'}, line {line}: no key or an unknown status "
                             f"(want ok, diverged or failed); {REPAIR}")
        runs = runs[finished_runs(runs, tables["epochs"], tables["layers"])].reset_index(drop=True)
        tables["runs"] = runs
    keys = set(runs["key"]) if len(runs) else set()
    for name in ("epochs", "layers"):
        if len(tables[name]):
            tables[name] = tables[name][tables[name]["key"].isin(keys)].reset_index(drop=True)
    return Tables(**tables)


# --------------------------------------------------------------------------- the database
def plain(value):
    """A value as sqlite3 stores it: NumPy scalars as Python ones, tuples and lists as JSON text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (tuple, list)):
        return json.dumps(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


sqlite3.register_converter("BOOLEAN", lambda b: b not in (b"0", b""))


class Database:
    """``study.db``: one connection, tables whose columns grow as new fields appear."""

    def __init__(self, path: Path):
        self.path = path
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.con = self.connect()
                return
            except sqlite3.OperationalError as e:
                # Opening races another process's open or close (switching to WAL, recovering or removing the
                # WAL file): SQLite answers "locked" at once there, without its busy handler, so wait here.
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise self.damaged(e) from None
                time.sleep(random.uniform(0.01, 0.1))
            except sqlite3.DatabaseError as e:
                raise self.damaged(e) from None

    def connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                              detect_types=sqlite3.PARSE_DECLTYPES)
        try:
            con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")  # WAL: a committed run survives a killed process
            con.execute("BEGIN IMMEDIATE")  # the run tables are created by their first insert, columns in its order
            con.execute('CREATE TABLE IF NOT EXISTS "exports" ("name" TEXT PRIMARY KEY, "size" INTEGER, '
                        '"mtime_ns" INTEGER)')
            con.execute("COMMIT")
            return con
        except BaseException:
            con.close()
            raise

    def damaged(self, e: Exception) -> StoreError | OSError:
        if isinstance(e, sqlite3.OperationalError) and any(s in str(e) for s in FULL):
            return OSError(errno.ENOSPC, f"{e}: free some space, then rerun the same command (finished runs are "
                                         f"kept and skipped)", str(self.path))
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            return StoreError(f"{self.path} stayed locked by another process for {BUSY_TIMEOUT_S} s ({e}); "
                              f"wait for the other study to finish, then rerun")
        return StoreError(f"{self.path} is not a readable SQLite database ({one_line(e)}); move it aside and rerun "
                          f"to start again from the CSV files beside it (they hold the runs up to their last "
                          f"export), or delete the folder to start over")

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction, taken at once (``BEGIN IMMEDIATE``): committed whole, or rolled back whole."""
        try:
            self.con.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise self.damaged(e) from None
        try:
            yield self.con
        except sqlite3.DatabaseError as e:
            with contextlib.suppress(sqlite3.Error):
                self.con.execute("ROLLBACK")
            raise self.damaged(e) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.con.execute("ROLLBACK")
            raise
        try:
            self.con.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise self.damaged(e) from None

    def columns(self, name: str) -> list[str]:
        return [row[1] for row in self.con.execute(f'PRAGMA table_info("{name}")')]

    def is_new(self) -> bool:
        """No table of results yet: a new database, or one whose creating process was killed before its first
        write (a 0-byte file reads so too). The CSV files beside it, if any, are then the study's data."""
        return not any(self.exists(name) for name in TABLES)

    def exists(self, name: str) -> bool:
        return self.con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).fetchone() is not None

    def delete(self, name: str, key: str | None = None) -> None:
        """Delete ``key``'s rows of ``name`` (every row without a key), inside a transaction."""
        if self.exists(name):
            self.con.execute(f'DELETE FROM "{name}"' + (' WHERE "key" = ?' if key else ""), (key,) if key else ())

    def outdated(self, names) -> None:
        """Mark the CSV exports of ``names`` as behind the database (inside the transaction that changed them)."""
        self.con.executemany('DELETE FROM "exports" WHERE "name" = ?', [(name,) for name in names])

    def insert(self, name: str, rows: list[dict]) -> None:
        """Insert ``rows`` (inside a transaction), creating the table or adding any column it lacks."""
        if not rows:
            return

        def declared(column, value) -> str:  # booleans read back as booleans, everything else as stored
            return f'"{column}"' + (" BOOLEAN" if isinstance(value, (bool, np.bool_)) else "")

        if not self.exists(name):
            first = rows[0]
            self.con.execute(f'CREATE TABLE "{name}" ({", ".join(declared(c, v) for c, v in first.items())})')
            if "key" in first:
                self.con.execute(f'CREATE INDEX "{name}_key" ON "{name}" ("key")')
        have = set(self.columns(name))
        for row in rows:
            for column, value in row.items():
                if column not in have:
                    self.con.execute(f'ALTER TABLE "{name}" ADD COLUMN {declared(column, value)}')
                    have.add(column)
        for columns in dict.fromkeys(tuple(row) for row in rows):  # rows grouped by their set of columns
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" * len(columns))
            self.con.executemany(f'INSERT INTO "{name}" ({names}) VALUES ({marks})',
                                 [[plain(row[c]) for c in columns] for row in rows if tuple(row) == columns])

    def read(self, name: str) -> pd.DataFrame:
        order = ", ".join(f'"{c}"' for c in ORDER.get(name, ())) or "rowid"
        try:
            if not self.exists(name):
                return empty(name)
            df = pd.read_sql_query(f'SELECT * FROM "{name}" ORDER BY {order}', self.con)
        except (sqlite3.DatabaseError, pd.errors.DatabaseError) as e:
            raise self.damaged(e) from None
        for column in df.columns:  # a column of nothing but NULL reads as NaN, as from a CSV file
            if df[column].dtype == object and df[column].isna().all():
                df[column] = np.nan
        return df if len(df) else empty(name)  # as a missing CSV file reads

    def data_version(self) -> int:
        """Changes whenever another connection commits (SQLite's ``PRAGMA data_version``)."""
        return self.con.execute("PRAGMA data_version").fetchone()[0]

    def finished(self, key: str) -> bool:
        try:
            row = self.con.execute('SELECT 1 FROM "runs" WHERE "key" = ? AND "status" IN (?, ?) LIMIT 1',
                                   (key, *FINISHED)).fetchone()
        except sqlite3.OperationalError as e:
            if "no such" in str(e):  # no run recorded yet
                return False
            raise self.damaged(e) from None
        except sqlite3.DatabaseError as e:
            raise self.damaged(e) from None
        return row is not None

    def read_all(self) -> Tables:
        return Tables(**{name: self.read(name) for name in TABLES})

    def export(self, folder: Path, tables: Tables | None = None, only_stale: bool = False) -> None:
        """Write the CSV exports (``only_stale``: only those behind the database, missing, or changed since
        written — as the ``exports`` table records each file's size and modification time)."""
        recorded = {name: (size, mtime) for name, size, mtime in self.con.execute('SELECT * FROM "exports"')}
        for name in TABLES:
            path = folder / f"{name}.csv"
            if only_stale and path.exists():
                stat = path.stat()
                if recorded.get(name) == (stat.st_size, stat.st_mtime_ns):
                    continue
            df = getattr(tables, name) if tables is not None else self.read(name)
            if len(df) == 0 and not path.exists():
                continue
            write_csv(df, path)
            stat = path.stat()
            with self.transaction():
                self.con.execute('INSERT OR REPLACE INTO "exports" VALUES (?, ?, ?)',
                                 (name, stat.st_size, stat.st_mtime_ns))

    def close(self) -> None:
        self.con.close()


def import_csv(folder: Path, db: Database) -> None:
    """Copy a CSV-only folder's (checked, whole) runs into a new database, in one transaction."""
    tables = load_csv(folder)
    with db.transaction():
        for name in TABLES:
            df = getattr(tables, name)
            if len(df):
                db.insert(name, df.astype(object).where(df.notna(), None).to_dict("records"))


def load(folder: Path | str) -> Tables:
    """Every table of ``folder``: from ``study.db`` when there is one (refreshing any missing or damaged CSV
    export), else from the CSV files (checked; unfinished runs left out)."""
    folder = Path(folder)
    path = folder / DB_NAME
    if not path.exists():
        return load_csv(folder)
    db = Database(path)
    try:
        if db.is_new():  # never export its empty tables over the CSV files
            return load_csv(folder)
        tables = db.read_all()
        with contextlib.suppress(OSError):  # a read-only folder is still readable
            db.export(folder, tables, only_stale=True)
        return tables
    finally:
        db.close()


class Store:
    """A study folder open for adding runs; ``has(key)`` tells which runs are already finished.

    ``tables`` is read from the database when asked for (and again only after a write, by this process or
    another one); ``add`` records one run in one transaction; ``export`` writes the CSV files.
    """

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / DB_NAME
        if not path.exists():
            load_csv(self.folder)  # a damaged CSV-only folder fails here, before any database exists
        self.db = Database(path)
        if self.db.is_new():  # new, or left empty by a killed process: the CSV files, if any, are the data
            import_csv(self.folder, self.db)
        self.db.export(self.folder, only_stale=True)
        self.added: set[str] = set()  # keys trained by this process (so --force retrains each run once)
        self._tables, self._version = None, None

    @property
    def tables(self) -> Tables:
        version = self.db.data_version()
        if self._tables is None or version != self._version:
            self._tables, self._version = self.db.read_all(), version
        return self._tables

    def has(self, key: str) -> bool:
        """Whether ``key`` has finished (ok or diverged); a failed run is trained again."""
        return self.db.finished(key)

    def add(self, result: RunResult) -> None:
        """Record a run — its runs row, epochs and layers rows — in one transaction, replacing any earlier rows
        of the same key (a forced rerun, a failed run trained again)."""
        key = result.run["key"]
        with self.db.transaction():
            for name in RUN_TABLES:
                self.db.delete(name, key)
            self.db.outdated(RUN_TABLES)
            self.db.insert("epochs", result.epochs)
            self.db.insert("layers", result.layers)
            self.db.insert("runs", [result.run])
        self._tables = None
        self.added.add(key)

    def save(self, name: str, df: pd.DataFrame) -> None:
        """``plan``: add the rows not yet recorded (a study's plan accumulates over its reruns);
        ``environment``: replace it (where the latest session ran)."""
        if name not in OTHER_TABLES:
            raise ValueError(f"{name!r} is not one of {OTHER_TABLES}; runs are recorded with add()")
        with self.db.transaction():
            if name == "plan":  # the union of the recorded rows and these, in that order, each row once
                recorded = self.db.read("plan")
                df = pd.concat([recorded, df], ignore_index=True).drop_duplicates() if len(recorded) else df
            self.db.delete(name)
            self.db.outdated((name,))
            rows = df.astype(object).where(df.notna(), None).to_dict("records")
            self.db.insert(name, rows)
        self._tables = None

    def export(self) -> None:
        """Write the five CSV files from the database (at the end of a study; ``load`` refreshes stale ones)."""
        self.db.export(self.folder, self.tables)

    def close(self) -> None:
        self.db.close()
