"""``python -m experiments.mutation``: mutation testing with mutmut, written up in ``results/mutation/``.

A mutant is the project with one small change (``<`` for ``<=``, ``+`` for ``-``, a constant off by one, an
argument dropped); a good suite fails on every mutant that changes a result. This runs ``mutmut`` (configured in
``pyproject.toml``'s ``[tool.mutmut]``: what it mutates, which tests it runs), then writes

- ``MUTATION.md``: tool version, the machine, the exact commands, the score per module, the planted bugs
  (``PLANTED`` below) and the tests that catch them, and every mutant the suite does not kill, with its diff and
  the reason it is *equivalent* (it cannot change any result) — or marked NOT KILLED, with the reason when only a
  CUDA run can kill it; the reasons are data, in ``results/mutation/equivalents.toml``;
- ``mutants.csv``: one row per mutant — module, mutant name, status, and for a mutant that survived an earlier
  run and is killed now, the test that kills it (found by running the tests with that mutant switched on).

Score = killed / (mutants − equivalent − not checked); timeouts count as killed, as in mutmut.

Usage (slow, CPU heavy: not in CI; mutmut copies the project into ``mutants/``, git-ignored):

    python -m experiments.mutation                          # everything in [tool.mutmut], then the report
    python -m experiments.mutation 'manual.*' 'torch_ref.*' # only mutants whose names match
    python -m experiments.mutation --recheck 'manual.*'     # rerun the survivors too, after adding tests
    python -m experiments.mutation --report-only            # rewrite the report from mutants/ as it stands
    python -m experiments.mutation --planted                # only re-check the planted bugs (about 20 s)

``--time-limit`` (default 1200 s) stops mutmut; what it did not reach is reported as "not checked", and a
rerun continues where it stopped (mutmut keeps its results in ``mutants/``).
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import functools
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "mutation"
KILLED = {"killed", "timeout", "caught by type check"}
# mutmut's exit codes; 255 is its worker's exit(-1) when the test run itself raises with the mutant switched on (a
# test module that no longer loads): the suite fails, and mutmut counts it as caught too
EXIT_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
               35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
               37: "caught by type check", None: "not checked", 255: "killed"}

EXPLAINED = OUT / "equivalents.toml"  # the mutants the suite does not kill, each with the reason


def load_explained(path: Path = EXPLAINED) -> tuple[list, list]:
    """The ``[[equivalent]]`` and ``[[cuda_only]]`` tables of ``path``, each a list of (mutant-name glob, text of
    the mutated line, why): one row per glob and text of an entry, in the file's order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))

    def rows(entries: list) -> list:
        return [(glob, text, entry["why"]) for entry in entries
                for glob in ([entry["mutants"]] if isinstance(entry["mutants"], str) else entry["mutants"])
                for text in entry["texts"]]

    return rows(data.get("equivalent", [])), rows(data.get("cuda_only", []))


# EQUIVALENT: mutants that cannot change any result; CUDA_ONLY: mutants that change a result only on a CUDA GPU,
# which stay in the "not killed" count with their reason.
EQUIVALENT, CUDA_ONLY = load_explained()

# Plausible bugs in the numbers a study reports (initialisation, run keys, diagnostics, batch order, optimizers),
# planted one at a time by ``--planted``: each must make a torch-free fact test fail.
PLANTED_MARKERS = "facts and not torch"  # the tests --planted runs (pytest -m), from tests/*/test_facts_*.py
PLANTED = [
    ("He initialisation with fan-out", "manual/init.py", "np.sqrt(2.0 / fan_in)", "np.sqrt(2.0 / fan_out)"),
    ("run key ignores weight_decay", "experiments/config.py", "if getattr(self, f.name) != f.default}",
     "if getattr(self, f.name) != f.default and f.name != 'weight_decay'}"),
    ("output layer counted in the hidden means", "experiments/report/study.py",
     'layers["layer"] < layers.groupby("key")', 'layers["layer"] <= layers.groupby("key")'),
    ("saturated: any over the probe images", "experiments/runs/diagnostics.py",
     "np.mean(act.saturated(activation))", "np.mean(np.any(act.saturated(activation), axis=0))"),
    ("saturated: all over the probe images", "experiments/runs/diagnostics.py",
     "np.mean(act.saturated(activation))", "np.mean(np.all(act.saturated(activation), axis=0))"),
    ("dead: any instead of all", "experiments/runs/diagnostics.py",
     "np.all(np.asarray(derivative).reshape(len(derivative), -1) == 0, axis=0)",
     "np.any(np.asarray(derivative).reshape(len(derivative), -1) == 0, axis=0)"),
    ("same shuffle every epoch (batch_order)", "experiments/runs/training.py", "default_rng([seed, epoch])",
     "default_rng(seed)"),
    ("same shuffle every epoch (the loop)", "experiments/runs/training.py",
     "batch_order(config.seed, epoch, len(train_y))", "batch_order(config.seed, 1, len(train_y))"),
    ("explicit weight decay 0.0 replaced by the default", "experiments/config.py",
     'if self.weight_decay is not None:\n            kwargs["weight_decay"]',
     'if self.weight_decay:\n            kwargs["weight_decay"]'),
    ("RMSprop ε inside the square root", "manual/optim/__init__.py", "avg = np.sqrt(v) + self.eps",
     "avg = np.sqrt(v + self.eps)"),
    ("Nesterov replaced by plain momentum", "manual/optim/__init__.py",
     "g = g + self.momentum * buf if self.nesterov else buf", "g = buf"),
]


def machine() -> str:
    """The machine this runs on, as measured now: ``2 CPUs (AMD EPYC, x86_64, Linux)`` — the CPUs this process
    may use (what ``nproc`` counts), the processor's name where the system gives one, its architecture and OS."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    name = platform.processor()
    if not name or name == platform.machine():  # Linux leaves processor() empty; its name is in /proc/cpuinfo
        try:
            info = Path("/proc/cpuinfo").read_text()
        except OSError:
            info = ""
        found = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
        name = found.group(1).strip() if found else ""
    about = ", ".join(part for part in (name, platform.machine(), platform.system()) if part)
    return f"{cpus or '?'} CPU{'' if cpus == 1 else 's'}" + (f" ({about})" if about else "")


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def mutants_to_run(patterns: list[str], recheck: bool) -> list[str]:
    """mutmut reruns every mutant it is given by name: so name only those matching ``patterns`` that are not
    checked yet (and, with ``recheck``, those that survived), to continue a stopped run rather than restart it."""
    previous = previous_rows()
    known = collect() or [{**row, "status": "not checked"} for row in previous.values()]  # mutants/ made afresh
    if not known:
        return patterns  # nothing generated or reported yet: mutmut expands the patterns itself
    wanted = {"not checked"} | ({"survived", "no tests", "suspicious", "timeout"} if recheck else set())
    settled = {name for name, row in previous.items()  # on the same source: equivalent, killed, or CUDA-only
               if row.get("source_sha1") == source_hash(row["file"])
               and (row.get("verdict") in ("equivalent", "killed") or row.get("note", "").startswith("NOT KILLED ("))}
    if patterns and not any(fnmatch.fnmatchcase(r["mutant"], p) for r in known for p in patterns):
        return patterns  # modules new since the last run: mutmut generates their mutants and expands the patterns
    return [r["mutant"] for r in known if r["status"] in wanted and r["mutant"] not in settled
            and (not patterns or any(fnmatch.fnmatchcase(r["mutant"], p) for p in patterns))]


def run_mutmut(names: list[str], max_children: int, time_limit: float) -> bool:
    """``nice -n 15 mutmut run`` on ``names`` (all when empty), stopped after ``time_limit`` seconds (then True)."""
    command = ["nice", "-n", "15", "mutmut", "run", "--max-children", str(max_children), *names]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        process.wait(timeout=time_limit)
        return False
    except subprocess.TimeoutExpired:
        print(f"mutmut stopped after the time limit of {time_limit:.0f} s; a rerun continues where it stopped")
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return True


def collect() -> list[dict]:
    """Every mutant mutmut knows about, from its ``mutants/**.meta`` files."""
    rows = []
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        source = meta.relative_to(ROOT / "mutants").as_posix()[:-len(".meta")]
        for name, code in data["exit_code_by_key"].items():
            rows.append({"file": source, "module": module_of(source), "mutant": name,
                         "status": EXIT_STATUS.get(code, "suspicious")})
    return rows


def module_of(path: str) -> str:
    """The row of the score table a file belongs to: ``manual/optim``, ``torch_ref``, ``experiments/runs``, ..."""
    parts = path.split("/")
    if parts[0] == "manual" and len(parts) > 2:
        return "/".join(parts[:2])
    if parts[0] == "manual":
        return path
    return parts[0] if parts[0] == "torch_ref" else "/".join(parts[:2])


def mutant_diff(name: str) -> str:
    out = subprocess.run(["mutmut", "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines()[1:] if line.strip()).strip()


def equivalent_reason(name: str, diff: str, table=None) -> str | None:
    """The reason ``EQUIVALENT`` (or ``table``) gives for the mutant ``name`` with this diff, if any."""
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    for glob, text, why in EQUIVALENT if table is None else table:
        if fnmatch.fnmatchcase(name, glob) and any(text in line for line in added):
            return why
    return None


@functools.cache
def durations_by_test() -> dict:
    """Each test's duration in seconds, as mutmut measured it (``mutants/mutmut-stats.json``)."""
    stats = ROOT / "mutants" / "mutmut-stats.json"
    return json.loads(stats.read_text())["duration_by_test"] if stats.exists() else {}


def recorded_runs() -> list[dict]:
    """The runs this report sums up (``runs.json``: command, date, minutes, mutants reached)."""
    path = OUT / "runs.json"
    return json.loads(path.read_text()) if path.exists() else []


def killing_test(name: str) -> str:
    """The first test that fails with mutant ``name`` switched on (run in mutmut's copy of the project)."""
    tests = subprocess.run(["mutmut", "tests-for-mutant", name], cwd=ROOT, capture_output=True,
                           text=True).stdout.splitlines()
    tests = [t for t in tests if t.startswith("tests/")] or ["tests/"]
    env = {**os.environ, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(ROOT / "mutants")}
    # the fast, pointed ones first (pytest keeps this order), so -x stops before any slow module fixture runs
    duration = durations_by_test()
    tests = sorted(tests, key=lambda t: ("/test_facts_" not in t, duration.get(t, math.inf), t))
    out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                         cwd=ROOT / "mutants", env=env, capture_output=True, text=True).stdout
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", out, re.M)  # ERROR: a test module that no longer loads
    return failed[0] if failed else "?"


def previous_rows() -> dict:
    path = OUT / "mutants.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["mutant"]: row for row in csv.DictReader(f)}


PLANT_COPIED = ("manual", "torch_ref", "experiments", "tests", "pyproject.toml")  # copied, so a bug can be planted
PLANT_LINKED = ("data", "examples", "results")  # read by the tests, never planted in: linked


def check_planted() -> list[tuple[str, str, list[str]]]:
    """Plant each bug of ``PLANTED`` in a copy of the working tree, run the torch-free fact tests
    (``PLANTED_MARKERS``) there, restore the file. The working tree is never touched, so tests run meanwhile
    (or a run killed halfway) never meet a planted bug."""
    facts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("*/test_facts_*.py"))
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        root = Path(tmp)
        for name in PLANT_COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, root / name)
        for name in PLANT_LINKED:
            (root / name).symlink_to(ROOT / name)
        return [plant(root, facts, *bug) for bug in PLANTED]


def plant(root: Path, facts: list[str], what: str, path: str, old: str, new: str) -> tuple[str, str, list[str]]:
    """One planted bug in the copy at ``root``: which fact tests failed with it."""
    file = root / path
    text = file.read_text()
    if text.count(old) != 1:
        return what, path, [f"(not planted: the line {old!r} is no longer in {path})"]
    try:
        file.write_text(text.replace(old, new))
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", PLANTED_MARKERS,
                              *facts], cwd=root, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(root)}).stdout
    finally:
        file.write_text(text)
    return what, f"{path}: `{old}` → `{new}`", re.findall(r"^FAILED (.+?)(?: - .*)?$", out, re.M)


def score_table(rows: list[dict]) -> list[list]:
    table = []
    groups = sorted({r["module"] for r in rows})
    for module in groups + ["all"]:
        mine = [r for r in rows if module in ("all", r["module"])]
        counts = Counter(r["verdict"] for r in mine)
        checked = len(mine) - counts["equivalent"] - counts["not checked"]
        killed = counts["killed"]
        score = f"{killed / checked:.1%}" if checked else "–"
        table.append([module, len(mine), killed, counts["equivalent"], counts["survived"] + counts["no tests"]
                      + counts["suspicious"], counts["not checked"], score])
    return table


def source_hash(path: str) -> str:
    return hashlib.sha1((ROOT / path).read_bytes()).hexdigest()[:12]


def write_report(rows: list[dict], runs: list[dict], planted) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    before = previous_rows()
    today = time.strftime("%Y-%m-%d %H:%M")
    for r in rows:
        old = before.get(r["mutant"], {})
        r["killed_by"], r["note"], r["diff"], r["source_sha1"] = old.get("killed_by", ""), "", "", \
            source_hash(r["file"])
        r["checked"] = today if r["status"] != "not checked" else ""
        if r["status"] == "not checked" and old.get("status", "not checked") != "not checked" \
                and old.get("source_sha1") == r["source_sha1"]:
            # mutmut forgets every verdict when the test selection changes or mutants/ is made afresh; a kill of the
            # same source stays a kill when tests are only added, and a survivor not rerun stays a survivor (still
            # counted, or explained again below), so the earlier run's status is kept, with its date
            r["status"], r["checked"] = old["status"], old.get("checked", "")
    # the slow parts (a `mutmut show` per survivor, a test run per new kill) run side by side, one per core
    wants_test = [r for r in rows if r["status"] in KILLED and r["killed_by"] in ("", "?")
                  and (before.get(r["mutant"], {}).get("status") in ("survived", "suspicious")
                       or r["killed_by"] == "?")]
    wants_diff = [r for r in rows if r["status"] not in KILLED and r["status"] not in ("not checked", "skipped")]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for r, test in zip(wants_test, pool.map(killing_test, [r["mutant"] for r in wants_test])):
            r["killed_by"] = test  # it survived an earlier run: killed by a test added since
        for r, diff in zip(wants_diff, pool.map(mutant_diff, [r["mutant"] for r in wants_diff])):
            r["diff"] = diff
    for r in rows:
        if r["status"] in KILLED:
            r["verdict"] = "killed"
        elif r["status"] in ("not checked", "skipped"):
            r["verdict"] = "not checked"
        else:
            reason = equivalent_reason(r["mutant"], r["diff"])
            cuda = equivalent_reason(r["mutant"], r["diff"], CUDA_ONLY)
            r["verdict"], r["note"] = ("equivalent", reason) if reason else \
                (r["status"], f"NOT KILLED ({cuda})" if cuda else "NOT KILLED")
    with open(OUT / "mutants.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["module", "file", "mutant", "status", "verdict", "killed_by", "note", "checked",
                                    "source_sha1"],
                                extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    lines = ["# Mutation testing", "",
             f"Tool: mutmut {mutmut_version()}, Python {sys.version.split()[0]}; this report was written on "
             f"{machine()}. The results below are mutmut's as they stand after these runs (each continues the "
             "last; mutmut keeps its verdicts in `mutants/`):", ""]
    lines += [f"- `{r['command']}` ({r['started']}, {r['minutes']} min, {r['mutants']} mutants"
              + (f", on {r['machine']}" if r.get("machine") else "") + ")" for r in runs]
    lines += ["", "What is mutated and which tests run: `[tool.mutmut]` in `pyproject.toml`. Score = killed / "
             "(mutants − equivalent − not checked); a timeout counts as killed. mutmut forgets all its verdicts "
             "when the list of tests it runs changes or `mutants/` is made afresh; the verdict an earlier run "
             "recorded on the same source file (same SHA-1 in `mutants.csv`) is then kept — a kill stays a kill, "
             "since adding tests cannot revive a mutant, and a survivor stays a survivor until it is rerun; the "
             "column `checked` dates each verdict.", "",
             "| module | mutants | killed | equivalent | not killed | not checked | score |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in score_table(rows)]
    if planted:
        lines += ["", "## Planted bugs, each caught by a torch-free test", "",
                  "Planted one at a time in a copy of the working tree by `python -m experiments.mutation --planted`, "
                  f"which runs `tests/*/test_facts_*.py -m '{PLANTED_MARKERS}'` there.", ""]
        for what, where, failed in planted:
            lines.append(f"- **{what}** ({where}): " + (", ".join(f"`{t}`" for t in failed) if failed
                                                        else "**NOT CAUGHT**"))
    later = [r for r in rows if r["killed_by"]]
    if later:
        lines += ["", "## Survivors of an earlier run, killed by tests added for them", "",
                  "| mutant | killed by |", "| --- | --- |"]
        lines += [f"| `{r['mutant']}` | `{r['killed_by']}` |" for r in later]
    left = [r for r in rows if r["verdict"] not in ("killed", "not checked")]
    lines += ["", "## Mutants the suite does not kill", ""]
    if not left:
        lines.append("None.")
    for r in left:
        lines += [f"### `{r['mutant']}` — {r['verdict']}", "",
                  f"{'Equivalent: ' + r['note'] if r['verdict'] == 'equivalent' else r['note']}", "",
                  "```diff", r["diff"], "```", ""]
    unchecked = Counter(r["module"] for r in rows if r["verdict"] == "not checked")
    if unchecked:
        lines += ["", "Not checked (the run stopped at its time limit, or the mutant was filtered out): "
                  + ", ".join(f"{m} {n}" for m, n in sorted(unchecked.items())) + "."]
    (OUT / "MUTATION.md").write_text("\n".join(lines).rstrip() + "\n")


def check_test_selection() -> None:
    """Warn when a fact test is missing from the tests mutmut runs (``pytest_add_cli_args_test_selection``)."""
    selection = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"].get(
        "pytest_add_cli_args_test_selection", [])
    missing = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "tests").glob("*/test_facts_*.py"))
               if p.relative_to(ROOT).as_posix() not in selection and "tests/" not in selection]
    if missing:
        print(f"warning: mutmut will not run {', '.join(missing)}: add them to pytest_add_cli_args_test_selection "
              "in pyproject.toml", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.mutation", description=__doc__.split("\n\n")[0])
    p.add_argument("patterns", nargs="*", help="mutant-name globs, e.g. 'manual.optim*' (default: all)")
    p.add_argument("--max-children", type=int, default=2, help="parallel mutmut workers (default 2)")
    p.add_argument("--time-limit", type=float, default=1200, help="seconds before mutmut is stopped (default 1200)")
    p.add_argument("--recheck", action="store_true",
                   help="also rerun the mutants that survived, but not the equivalent ones (after adding tests)")
    p.add_argument("--report-only", action="store_true", help="do not run mutmut, only write the report")
    p.add_argument("--planted", action="store_true", help="only re-check the planted bugs")
    args = p.parse_args(argv)
    if args.planted:
        for what, where, failed in check_planted():
            print(f"{what}: {', '.join(failed) if failed else 'NOT CAUGHT'}")
        return 0
    check_test_selection()
    if not args.report_only:
        names = mutants_to_run(args.patterns, args.recheck)
        # mutmut runs a mutant only against the tests it saw call the mutated function; tests and functions change
        # between runs, so that record is made afresh (about a minute) rather than trusted
        (ROOT / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M")
        stopped = run_mutmut(names, args.max_children, args.time_limit) if names or not args.patterns else False
        command = "python -m experiments.mutation " + shlex.join(argv if argv is not None else sys.argv[1:])
        asked = [r for r in collect() if any(fnmatch.fnmatchcase(r["mutant"], name) for name in names)]
        reached = sum(r["status"] != "not checked" for r in asked)
        mutants = f"{reached} of {len(asked)}" if names else "all"
        runs = recorded_runs()  # read now, not at the start: another run or an edit may have changed it
        runs.append({"command": command.strip(), "started": started,
                     "minutes": round((time.perf_counter() - start) / 60, 1),
                     "mutants": mutants + (" (stopped at the time limit)" if stopped else ""), "machine": machine()})
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    rows = collect()
    if not rows:
        print("no mutants found: run mutmut first (python -m experiments.mutation)", file=sys.stderr)
        return 2
    write_report(rows, recorded_runs(), check_planted())
    print(f"wrote {OUT / 'MUTATION.md'} and {OUT / 'mutants.csv'}")
    for row in score_table(rows):
        print(*row, sep="\t")
    return 0


if __name__ == "__main__":
    sys.exit(main())
