"""``experiments.store``: runs land whole in study.db, CSV exports are rebuilt, damaged files are named.

Most tests add hand-made results (no training); the two that need real processes train tiny runs.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import store as results_store
from experiments.runs.training import RunResult
from experiments.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]


def result(key: str, status: str = "ok", epochs: int = 2, layers: int = 2, acc: float = 0.9) -> RunResult:
    """A hand-made run: ``epochs`` epoch rows and (initialisation + epochs) × ``layers`` layer rows."""
    probed = epochs + 1 if status == "ok" else epochs
    return RunResult(
        run={"key": key, "layer_sizes": "784-16-10", "lr": 0.1, "nesterov": False, "weight_decay": None,
             "status": status, "epochs_done": epochs, "final_val_acc": acc, "test_acc": acc, "message": None,
             "stacked": True},
        epochs=[{"key": key, "epoch": e, "train_loss": 1.0 / e, "val_acc": acc} for e in range(1, epochs + 1)],
        layers=[{"key": key, "epoch": e, "layer": l, "grad_norm": 0.5, "saturated_frac": float("nan")}
                for e in range(probed) for l in range(layers)])


def filled(folder: Path, keys=("aaaa", "bbbb", "cccc")) -> Store:
    store = Store(folder)
    for i, key in enumerate(keys):
        store.add(result(key, acc=0.5 + i / 10))
    store.save("plan", pd.DataFrame({"study": "s", "arm": list(keys), "key": list(keys)}))
    store.save("environment", pd.DataFrame({"name": ["device"], "value": ["cpu"]}))
    store.export()
    return store


def test_a_run_lands_whole_and_a_rerun_replaces_it(tmp_path):
    store = filled(tmp_path)
    assert store.has("aaaa") and not store.has("zzzz")
    tables = store.tables
    assert list(tables.runs["key"]) == ["aaaa", "bbbb", "cccc"]
    assert len(tables.epochs) == 3 * 2 and len(tables.layers) == 3 * 3 * 2
    assert tables.runs["stacked"].tolist() == [True] * 3 and tables.runs["nesterov"].dtype == bool
    store.add(result("aaaa", epochs=1, acc=0.1))  # a forced rerun: its old rows go
    tables = store.tables
    assert len(tables.runs) == 3 and tables.runs.set_index("key").loc["aaaa", "test_acc"] == 0.1
    assert len(tables.epochs[tables.epochs["key"] == "aaaa"]) == 1
    store.add(RunResult(run={**result("dddd").run, "new_field": 3}))  # a column appears later
    assert store.tables.runs.set_index("key")["new_field"].isna().sum() == 3


def test_the_csv_exports_are_the_database(tmp_path):
    filled(tmp_path)
    db = results_store.load(tmp_path)
    for name in results_store.TABLES:
        csv = pd.read_csv(tmp_path / f"{name}.csv", dtype={"key": str})
        pd.testing.assert_frame_equal(csv, getattr(db, name), check_dtype=False)
    assert pd.read_csv(tmp_path / "layers.csv")["saturated_frac"].isna().all()  # NaN stays NaN
    Store(tmp_path).save("environment", pd.DataFrame({"name": ["device"], "value": ["cuda"]}))
    results_store.load(tmp_path)  # as `report` does: exports behind the database are written again
    assert pd.read_csv(tmp_path / "environment.csv")["value"].tolist() == ["cuda"]


def test_failed_runs_are_recorded_but_not_finished(tmp_path):
    store = Store(tmp_path)
    store.add(RunResult(run={**result("ffff").run, "status": "failed", "epochs_done": 0,
                             "message": "ValueError: boom"}))
    assert not store.has("ffff")
    assert store.tables.runs.loc[0, "message"] == "ValueError: boom"


def test_the_plan_accumulates_and_the_environment_is_replaced(tmp_path):
    store = Store(tmp_path)
    first = pd.DataFrame({"study": "s", "arm": ["relu", "tanh"], "key": ["k1", "k2"]})
    store.save("plan", first)
    store.save("plan", pd.DataFrame({"study": "s", "arm": ["tanh", "gelu"], "key": ["k2", "k3"]}))
    assert Store(tmp_path).tables.plan["arm"].tolist() == ["relu", "tanh", "gelu"]  # union, in order, each once
    store.save("environment", pd.DataFrame({"name": ["device"], "value": ["cpu"]}))
    store.save("environment", pd.DataFrame({"name": ["device"], "value": ["cuda"]}))
    assert store.tables.environment["value"].tolist() == ["cuda"]
    with pytest.raises(ValueError, match="add"):
        store.save("runs", first)


@pytest.mark.parametrize("damage", ["delete", "empty", "truncate", "garbage"])
def test_a_damaged_or_deleted_export_is_rebuilt_from_the_database(tmp_path, damage):
    filled(tmp_path)
    for name in ("runs", "epochs"):
        path = tmp_path / f"{name}.csv"
        want = path.read_text()
        if damage == "delete":
            path.unlink()
        elif damage == "empty":
            path.write_text("")
        elif damage == "truncate":
            path.write_text(want[:len(want) // 2])
        else:
            path.write_text("not,a\ncsv,file,at,all\n")
        tables = results_store.load(tmp_path) if name == "runs" else Store(tmp_path).tables  # `report`, a study
        assert path.read_text() == want
        assert len(tables.runs) == 3


def test_a_damaged_database_is_named_with_what_to_do(tmp_path):
    filled(tmp_path)
    (tmp_path / "study.db-wal").unlink(missing_ok=True)
    (tmp_path / "study.db").write_bytes(b"this is not an SQLite database" * 100)
    for open_folder in (Store, results_store.load):
        with pytest.raises(StoreError, match=r"study\.db is not a readable SQLite database \(file is not a "
                                             r"database\); move it aside"):
            open_folder(tmp_path)


def csv_only(folder: Path, keys=("aaaa", "bbbb", "cccc")) -> Path:
    """A study folder as committed: CSV files, no database."""
    store = filled(folder, keys)
    store.close()
    for path in folder.glob("study.db*"):
        path.unlink()
    return folder


@pytest.mark.parametrize("name, damage, message", [
    ("runs", lambda t: "", r"runs\.csv is empty"),
    ("epochs", lambda t: t[:-8], r"epochs\.csv, line 7: \d+ fields where the header has 4: too few"),
    ("layers", lambda t: t.replace("grad_norm,", "", 1), r"layers\.csv, line 2: 5 fields where the header has 4: too many"),
    ("runs", lambda t: t.replace("key,", "id,", 1), r"runs\.csv, line 1: the header lacks the column\(s\) key"),
    ("runs", lambda t: t.replace("status", "state", 1).replace("epochs_done", "done", 1),
     r"runs\.csv, line 1: the header lacks the column\(s\) status, epochs_done;"),
    ("epochs", lambda t: t.replace("\n", ",9\n", 3).replace(",9\n", "\n", 2),
     r"epochs\.csv, line 3: 5 fields where the header has 4: too many"),
    ("runs", None, r"runs\.csv is missing beside epochs\.csv and layers\.csv"),
])
def test_a_damaged_csv_only_folder_is_named_with_file_and_line(tmp_path, name, damage, message):
    folder = csv_only(tmp_path)
    path = folder / f"{name}.csv"
    if damage is None:
        path.unlink()
    else:
        path.write_text(damage(path.read_text()))
    for open_folder in (results_store.load, Store):
        with pytest.raises(StoreError, match=message):
            open_folder(folder)
    assert not (folder / "study.db").exists()  # nothing created from a damaged folder


def test_a_run_with_incomplete_rows_counts_as_not_finished(tmp_path):
    folder = csv_only(tmp_path)
    layers = (folder / "layers.csv").read_text().splitlines(keepends=True)
    (folder / "layers.csv").write_text("".join(layers[:-1]))  # cut at a line boundary: cccc lost its last row
    tables = results_store.load(folder)
    assert list(tables.runs["key"]) == ["aaaa", "bbbb"]
    assert set(tables.epochs["key"]) == set(tables.layers["key"]) == {"aaaa", "bbbb"}
    store = Store(folder)  # resuming imports the folder into a database: cccc will be trained again
    assert store.has("aaaa") and not store.has("cccc")
    assert (folder / "study.db").exists() and list(pd.read_csv(folder / "runs.csv")["key"]) == ["aaaa", "bbbb"]



@pytest.mark.parametrize("table", ["layers", "epochs"])
def test_a_deleted_layers_or_epochs_file_leaves_every_run_unfinished(tmp_path, table):
    folder = csv_only(tmp_path)
    (folder / f"{table}.csv").unlink()
    tables = results_store.load(folder)  # report and resume read it: empty tables with their columns, no KeyError
    assert len(tables.runs) == 0 and "key" in tables.runs and "key" in tables.layers and "key" in tables.epochs
    store = Store(folder)
    assert not any(store.has(key) for key in ("aaaa", "bbbb", "cccc"))  # all three are trained again


@pytest.mark.parametrize("damage", [b"", None])  # a 0-byte file; a database made by a process killed at once
def test_a_database_with_no_tables_leaves_the_csv_files_beside_it_as_the_data(tmp_path, damage):
    folder = csv_only(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.glob("*.csv")}
    if damage is None:
        results_store.Database(folder / "study.db").close()
    else:
        (folder / "study.db").write_bytes(damage)
    tables = results_store.load(folder)  # as report does: the CSV files stay the data, not overwritten by empty ones
    assert list(tables.runs["key"]) == ["aaaa", "bbbb", "cccc"]
    assert {p.name: p.read_bytes() for p in folder.glob("*.csv")} == before
    store = Store(folder)  # resuming imports them: nothing is trained again
    assert all(store.has(key) for key in ("aaaa", "bbbb", "cccc"))


@pytest.mark.parametrize("name, damage, message", [
    ("layers", lambda t: t.replace(",0.5,", ",half,", 1), r"layers\.csv, line 2: column grad_norm holds 'half', not a number"),
    ("epochs", lambda t: t.replace(",1,", ",one,", 1), r"epochs\.csv, line 2: column epoch holds 'one', not a number"),
    ("runs", lambda t: t.replace(",2,", ",two,", 1), r"runs\.csv, line 2: column epochs_done holds 'two', not a number"),
])
def test_a_word_where_a_number_belongs_is_named_with_file_line_and_column(tmp_path, name, damage, message):
    folder = csv_only(tmp_path)
    path = folder / f"{name}.csv"
    path.write_text(damage(path.read_text()))
    with pytest.raises(StoreError, match=message):
        results_store.load(folder)


def test_a_binary_csv_file_is_named(tmp_path):
    folder = csv_only(tmp_path)
    (folder / "layers.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(StoreError, match=r"layers\.csv cannot be read as CSV \('utf-8' codec can't decode"):
        results_store.load(folder)


def test_a_full_disk_is_the_systems_refusal_with_exit_1_not_a_damaged_database(tmp_path, capsys):
    db = results_store.Database(tmp_path / "study.db")
    for words in ("database or disk is full", "disk I/O error"):
        error = db.damaged(sqlite3.OperationalError(words))
        assert isinstance(error, OSError) and not isinstance(error, StoreError)
        assert str(error) == (f"[Errno 28] {words}: free some space, then rerun the same command (finished runs "
                              f"are kept and skipped): '{tmp_path / 'study.db'}'")
    from experiments.cli import report_error

    assert report_error(db.damaged(sqlite3.OperationalError("database or disk is full"))) == 1
    assert capsys.readouterr().err == (f"error: {tmp_path / 'study.db'}: database or disk is full: free some space, "
                                       f"then rerun the same command (finished runs are kept and skipped)\n")

def test_opening_waits_out_a_lock_sqlite_reports_at_once(tmp_path, monkeypatch):
    """Two processes opening one new study.db race on the switch to WAL: SQLite then says "locked" at once."""
    connect, calls = results_store.Database.connect, []

    def racing(self):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return connect(self)

    monkeypatch.setattr(results_store.Database, "connect", racing)
    store = filled(tmp_path, keys=("aaaa",))
    assert len(calls) == 3 and store.has("aaaa")


def test_a_lock_that_outlasts_the_timeout_is_named(tmp_path, monkeypatch):
    def locked(self):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(results_store.Database, "connect", locked)
    monkeypatch.setattr(results_store, "BUSY_TIMEOUT_S", 0.2)
    started = time.monotonic()
    with pytest.raises(StoreError, match="stayed locked by another process"):
        Store(tmp_path)
    assert 0.2 <= time.monotonic() - started < 5


# --------------------------------------------------------------------------- real processes
TRAIN_SCRIPT = textwrap.dedent("""
    import dataclasses, sys, torch
    torch.set_num_threads(1)
    import pandas as pd
    from experiments.data import load_mnist
    from experiments.execute import ExecOptions, train_pending
    from experiments.runs.training import RunConfig
    from experiments.store import Store
    folder, activation, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    base = RunConfig(layer_sizes=(784, 16, 10), activation=activation, train_subset=500, epochs=1, batch_size=50)
    configs = [dataclasses.replace(base, seed=seed) for seed in range(n)]
    store = Store(folder)
    store.save("plan", pd.DataFrame({"arm": activation, "key": [c.key() for c in configs]}))
    print("started", flush=True)
    train_pending(configs, load_mnist(train_subset=500), store, ExecOptions(stack=False, progress=False))
""")


def start(folder: Path, activation: str, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(folder), activation, str(n)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
@pytest.mark.torch  # the processes train on the torch backend
def test_two_studies_into_one_folder_at_once_both_land_their_runs(tmp_path):
    procs = [start(tmp_path, activation, 3) for activation in ("relu", "tanh")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    tables = results_store.load(tmp_path)
    assert sorted(tables.runs["activation"]) == ["relu"] * 3 + ["tanh"] * 3
    assert sorted(tables.plan["arm"]) == ["relu"] * 3 + ["tanh"] * 3  # both plans, accumulated
    assert len(tables.epochs) == 6 and (tables.runs["status"] == "ok").all()


@pytest.mark.processes  # real processes started, interrupted or killed: not run by mutation testing
@pytest.mark.torch  # the processes train on the torch backend
def test_after_kill_9_the_study_resumes_without_cleanup_or_redoing_runs(tmp_path, landed_runs):
    proc = start(tmp_path, "relu", 6)
    deadline = time.monotonic() + 90
    while landed_runs(tmp_path) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = landed_runs(tmp_path)
    assert 1 <= done < 6, "the process was killed mid-study"
    kept = results_store.load(tmp_path).runs.set_index("key")["wall_time_s"]
    # the same study again, in this process: nothing to clean up, only the missing runs are trained
    again = start(tmp_path, "relu", 6)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    runs = results_store.load(tmp_path).runs
    assert len(runs) == 6 and runs["key"].is_unique and (runs["status"] == "ok").all()
    pd.testing.assert_series_equal(runs.set_index("key")["wall_time_s"].loc[kept.index], kept)  # not retrained


# --------------------------------------------------------------------------- which rows make a run whole
def frames(runs, epochs, layers):
    """``finished_runs``'s three frames from tuples: runs (key, status, epochs_done), epochs (key, epoch) and
    layers (key, epoch) with two layer rows per epoch."""
    return (pd.DataFrame(runs, columns=["key", "status", "epochs_done"]),
            pd.DataFrame(epochs, columns=["key", "epoch"]),
            pd.DataFrame([(k, e, l) for k, e in layers for l in (0, 1)], columns=["key", "epoch", "layer"]))


def test_a_run_is_whole_with_its_epochs_and_layers_from_initialisation_to_its_last_probe():
    probed = [("ok", e) for e in (0, 1, 2)] + [("div", e) for e in (0, 1)] + [("div2", e) for e in (0, 1, 2)]
    runs, epochs, layers = frames(
        [("ok", "ok", 2), ("div", "diverged", 2), ("div2", "diverged", 2), ("short", "ok", 2),
         ("fail", "failed", 0), ("nan", "ok", None), ("late", "ok", 2), ("diverged_early", "diverged", 2)],
        [(k, e) for k in ("ok", "div", "div2", "late", "diverged_early") for e in (1, 2)] + [("short", 1), ("nan", 1)],
        probed + [("short", 0), ("short", 1), ("nan", 0), ("nan", 1), ("late", 0), ("late", 1),
                  ("diverged_early", 0)])
    whole = results_store.finished_runs(runs, epochs, layers)
    assert dict(zip(runs["key"], whole)) == {
        "ok": True,       # 2 epochs, layers probed at 0, 1, 2
        "div": True,      # diverged at epoch 2: probed up to the epoch before, where the loss was finite
        "div2": True,     # ... or up to its last epoch
        "short": False,   # one epoch row of two
        "fail": True,     # a failed run is its runs row alone
        "nan": False,     # no epochs_done: never whole, whatever rows it has
        "late": False,    # an ok run must be probed after its last epoch too
        "diverged_early": False,  # a diverged run probed only at initialisation lacks epoch 1
    }
    assert whole.dtype == bool


def test_finished_runs_keeps_the_index_of_the_rows_it_is_given():
    runs, epochs, layers = frames([("x", "ok", 1), ("y", "failed", 0), ("z", "ok", 1)],
                                  [("x", 1)], [("x", 0), ("x", 1)])
    runs.index = [10, 20, 30]
    whole = results_store.finished_runs(runs, epochs, layers)
    assert list(whole.index) == [10, 20, 30] and list(whole) == [True, True, False]


def test_a_failed_run_stays_in_a_csv_only_folder_and_the_runs_after_it_are_checked(tmp_path):
    store = Store(tmp_path)
    for key, status in (("aaaa", "failed"), ("bbbb", "ok")):
        store.add(result(key, status=status) if status == "ok" else
                  RunResult(run={**result(key).run, "status": "failed", "epochs_done": 0, "message": "boom"},
                            epochs=[], layers=[]))
    store.export()
    store.close()
    (tmp_path / "study.db").unlink()
    tables = results_store.load(tmp_path)
    assert list(tables.runs["key"]) == ["aaaa", "bbbb"] and list(tables.runs["status"]) == ["failed", "ok"]


# --------------------------------------------------------------------------- values and types in the database
def test_numpy_scalars_tuples_and_nan_are_stored_as_plain_values():
    import numpy as np
    assert results_store.plain(np.int64(3)) == 3 and type(results_store.plain(np.int64(3))) is int
    assert results_store.plain(np.float32(0.5)) == 0.5 and type(results_store.plain(np.float32(0.5))) is float
    assert results_store.plain(np.float64("nan")) is None and results_store.plain(float("nan")) is None
    assert results_store.plain((784, 16, 10)) == "[784, 16, 10]" and results_store.plain([1]) == "[1]"
    assert results_store.plain("relu") == "relu" and results_store.plain(None) is None


def test_columns_keep_their_values_types_and_order(tmp_path):
    db = results_store.Database(tmp_path / "study.db")
    with db.transaction():
        db.insert("runs", [{"key": "0012", "status": "ok", "epochs_done": 1, "note": "1e3"},
                           {"key": "0003", "status": "ok", "epochs_done": 1, "note": "007", "flag": True},
                           {"key": "0001", "status": "ok", "epochs_done": 1, "note": "x", "flag": None,
                            "extra": False}])
    runs = db.read("runs")
    assert list(runs["key"]) == ["0001", "0003", "0012"]  # in key order, whatever the insertion order
    assert list(runs["note"]) == ["x", "007", "1e3"]  # text stays text: no column gets a numeric affinity
    # booleans read back as booleans (not 0 and 1), in a column created with the table or added later
    assert pd.isna(runs["flag"].iloc[0]) and str(runs["flag"].iloc[1]) == "True"
    assert str(runs["extra"].iloc[0]) == "False" and pd.isna(runs["extra"].iloc[1])
    assert [row[1] for row in db.con.execute("PRAGMA index_list('runs')")] == ["runs_key"]
    with db.transaction():
        db.insert("environment", [{"name": "device", "value": "cpu"}])
    assert list(db.con.execute("PRAGMA index_list('environment')")) == []  # no key column, no key index
    assert db.read("environment").to_dict("records") == [{"name": "device", "value": "cpu"}]
    with db.transaction():
        db.delete("runs")
    assert list(db.read("runs").columns) == ["key", "status", "epochs_done"]  # as a missing CSV file reads
    db.close()


def test_the_plan_keeps_its_column_order_and_a_save_is_seen_at_once(tmp_path):
    store = Store(tmp_path)
    _ = store.tables  # read once, so that a stale cache would show
    store.save("plan", pd.DataFrame({"study": ["s"], "arm": ["a"], "key": ["k1"]}))
    assert list(store.tables.plan.columns) == ["study", "arm", "key"]
    assert list(store.tables.plan["key"]) == ["k1"]
    store.save("plan", pd.DataFrame({"study": ["s"], "arm": ["b"], "key": ["k2"]}))
    assert list(store.tables.plan["key"]) == ["k1", "k2"] and list(store.tables.plan.columns) == ["study", "arm", "key"]
    store.close()


# --------------------------------------------------------------------------- exports
def test_an_empty_table_writes_no_file_and_the_tables_after_it_are_written(tmp_path):
    store = Store(tmp_path)
    store.add(result("aaaa"))
    store.save("environment", pd.DataFrame({"name": ["device"], "value": ["cpu"]}))  # no plan (a `train`)
    store.export()
    store.close()
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == ["environment.csv", "epochs.csv", "layers.csv",
                                                            "runs.csv"]


def test_an_export_that_is_up_to_date_is_not_rewritten(tmp_path):
    filled(tmp_path).close()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.csv")}
    time.sleep(0.01)
    results_store.load(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.csv")} == before


class FailingConnection:
    """A connection whose every statement fails as a damaged database's does."""

    def __init__(self, error):
        self.error = error

    def execute(self, *args):
        raise self.error


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database disk image is malformed"),
                                   sqlite3.DatabaseError("file is not a database")])
def test_a_database_that_fails_mid_read_is_named_with_sqlites_words(tmp_path, error):
    db = results_store.Database(tmp_path / "study.db")
    real, db.con = db.con, FailingConnection(error)
    for read in (lambda: db.finished("k"), lambda: db.read("runs")):
        with pytest.raises(StoreError, match=f"study.db is not a readable SQLite database \\({error}\\)"):
            read()
    db.con = real
    db.close()


def test_only_a_lock_is_called_a_lock():
    db = results_store.Database.__new__(results_store.Database)
    db.path = Path("study.db")
    assert "stayed locked" in str(db.damaged(sqlite3.OperationalError("database is locked")))
    assert "not a readable" in str(db.damaged(sqlite3.OperationalError("no such column: x")))
    assert "not a readable" in str(db.damaged(sqlite3.DatabaseError("the table is locked in a strange way")))


# --------------------------------------------------------------------------- how the database is opened
def test_the_database_is_opened_in_wal_mode_with_its_busy_timeout_and_explicit_transactions(tmp_path):
    db = results_store.Database(tmp_path / "study.db")
    assert db.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.con.execute("PRAGMA busy_timeout").fetchone()[0] == results_store.BUSY_TIMEOUT_S * 1000
    assert db.con.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    db.con.execute('CREATE TABLE "t" ("x")')  # a statement outside transaction() is not left open ...
    db.con.execute('INSERT INTO "t" VALUES (1)')
    other = sqlite3.connect(tmp_path / "study.db")  # ... another process sees it at once
    assert other.execute('SELECT "x" FROM "t"').fetchall() == [(1,)]
    other.close()
    db.close()
    again = results_store.Database(tmp_path / "study.db")  # WAL is a property of the file: it stays on
    assert again.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_opening_a_study_folder_rewrites_no_up_to_date_export_and_makes_missing_parents(tmp_path):
    filled(tmp_path).close()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.csv")}
    time.sleep(0.01)
    Store(tmp_path).close()
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.csv")} == before
    nested = Store(tmp_path / "a" / "b" / "c")
    nested.add(result("aaaa"))
    nested.close()
    assert (tmp_path / "a" / "b" / "c" / "study.db").exists()


def test_keys_that_look_like_numbers_read_back_from_csv_as_written(tmp_path):
    keys = ("001234567890", "0000000000e5", "12345678")  # an int with leading zeros, a float 0.0, an int
    tables = results_store.load(csv_only(tmp_path, keys))
    for name in ("runs", "epochs", "layers"):
        assert set(getattr(tables, name)["key"]) == set(keys)


def test_a_folder_that_cannot_be_written_is_still_read(tmp_path, monkeypatch):
    filled(tmp_path).close()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(results_store.Database, "export", refuse)
    tables = results_store.load(tmp_path)  # the stale CSV files stay as they are; the tables are read anyway
    assert sorted(tables.runs["key"]) == ["aaaa", "bbbb", "cccc"]
