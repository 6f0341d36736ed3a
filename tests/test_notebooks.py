"""Every notebook runs top to bottom, as a reader would run it, and the exercises' worked solutions pass every check.

The notebooks are jupytext percent-format ``.py`` files (``notebooks/``): each is run as a script from the repository
root with a non-interactive matplotlib backend, so a notebook that breaks fails here. The solutions file ends with
``assert all(results.values())``: every ``check_backward`` of the exercises passes.
"""
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
SOLUTIONS = ROOT / "notebooks" / "solutions" / "03_exercises_solutions.py"


@functools.lru_cache(maxsize=None)  # each file runs once, whichever tests read its output
def run(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_five_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_neuron.py", "02_backprop_by_hand.py", "03_exercises.py",
                                           "04_vanishing_exploding.py", "05_your_own_activation.py"]


@pytest.mark.parametrize("notebook", NOTEBOOKS + [SOLUTIONS], ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(notebook):
    done = run(notebook)
    assert done.returncode == 0, f"{notebook.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert notebook.read_text().startswith("# ---\n# jupyter:") and "# %%" in notebook.read_text()


def test_the_worked_solutions_pass_every_check_and_the_starter_code_does_not():
    solved, starter = run(SOLUTIONS), run(ROOT / "notebooks" / "03_exercises.py")
    for name in ["affine", "relu", "softmax_cross_entropy", "batchnorm", "conv", "lstm"]:
        assert f"layer '{name}': passed" in solved.stdout
        assert f"layer '{name}': FAILED" in starter.stdout  # the starter code leaves the reader something to do
    assert "YourLSTM (3, 4, batch_first=True): passed" in solved.stdout  # check_recurrent, through time
    assert "YourLSTM (3, 4, batch_first=True): FAILED" in starter.stdout and "wrong from t = " in starter.stdout
    assert "not yet" not in solved.stdout


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_as_a_jupyter_notebook(notebook):
    """jupytext reads each file as a notebook of markdown and code cells (what Jupyter shows)."""
    jupytext = pytest.importorskip("jupytext")
    cells = jupytext.read(notebook).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# ")
    assert {c.cell_type for c in cells} == {"markdown", "code"}
