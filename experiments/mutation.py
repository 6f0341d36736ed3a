"""``python -m experiments.mutation``: mutation testing with mutmut, written up in ``results/mutation/``.

A mutant is the project with one small change (``<`` for ``<=``, ``+`` for ``-``, a constant off by one, an
argument dropped); a good suite fails on every mutant that changes a result. This runs ``mutmut`` (configured in
``pyproject.toml``'s ``[tool.mutmut]``: what it mutates, which tests it runs), then writes

- ``MUTATION.md``: tool version, the exact command, the score per module, the planted bugs of issue 15 and the
  tests that catch them, and every mutant the suite does not kill, with its diff and the reason it is
  *equivalent* (it cannot change any result: ``EQUIVALENT`` below) — or marked NOT KILLED;
- ``mutants.csv``: one row per mutant — module, mutant name, status, and for a mutant that once survived and is
  now killed, the test that kills it (found by running the tests with that mutant switched on).

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
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "mutation"
KILLED = {"killed", "timeout", "caught by type check"}
EXIT_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
               35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
               37: "caught by type check", None: "not checked"}

# Mutants that cannot change any result, each with the reason: (mutant-name glob, text of the mutated line, why).
# Matched against the mutant's name and the "+" line of its diff, so a rerun on changed code
# finds them again even when mutmut numbers them differently.
EQUIVALENT = [
    ("manual.optim.clip.x_clip_grad_norm___mutmut_*", "if not scale > 1:",
     "the two conditions differ only when the scale is exactly 1, where the mutant multiplies every gradient by 1.0, "
     "which leaves every float entry (NaN, inf, −0 and subnormals included) bit for bit unchanged"),
    *[("manual.activations.x_*", text,
       "astype(z.dtype) gives the same values and dtype whether or not it copies, and np.where's result is a "
       "fresh array that nothing else holds")
      for text in (".astype(z.dtype, copy=None)", ".astype(z.dtype, copy=True)", ".astype(z.dtype, )")],
    ("manual.activations.x_leaky_relu__mutmut_*", "np.where(z >= 0, z, LEAKY_SLOPE * z)",
     "at z = 0 both branches give 0 (z and 0.01·z)"),
    ("manual.activations.x_elu__mutmut_*", "np.where(z >= 0, z, ELU_ALPHA",
     "at z = 0 both branches give 0 (z and α·expm1(0)); it differs only at z = −0.0, where it returns −0.0 instead "
     "of +0.0 (as torch does): equal values, and no later step divides by an activation"),
    ("manual.activations.x_*elu__mutmut_*", "np.minimum(z, 1)",
     "the second branch is only taken where z ≤ 0, and there min(z, 1) = min(z, 0) = z, except at z = −0.0, where "
     "only the sign of zero differs (equal values)"),
    ("manual.activations.x_d_elu__mutmut_*", "np.where(z >= 0, 1.0",
     "at z = 0 both branches give 1 (1.0 and α·e⁰ with α = 1)"),
    ("manual.activations.x_d_elu__mutmut_*", "np.where(z > 1, 1.0",
     "for 0 < z ≤ 1 the second branch gives α·e^min(z, 0) = α·e⁰ = 1, the first branch's value (α = 1)"),
    ("manual.activations.x_d_elu__mutmut_*", "np.where(None, 1.0",
     "np.where(None, …) takes the second branch everywhere, α·e^min(z, 0), which is 1 wherever z > 0 (α = 1): "
     "the same numbers"),
    ("manual.activations.xǁActivationǁderivative__mutmut_*", "if (self.df_from_output is None) or True else",
     "every caller passes a = f(z) computed by the same function, so df(z) = df_from_output(f(z)) bit for bit: "
     "only the cost differs"),
    ("manual.activations.x_sigmoid__mutmut_*", "np.where(z > 0, 1.0, e)",
     "at z = 0 both branches give 1/(1 + 1): e = exp(−|0|) = 1.0"),
    *[("torch_ref.model.xǁMLPǁpre_activations__mutmut_*", text,
       "only the last layer's activation changes, and pre_activations throws it away (it returns the z's)")
      for text in ("(i < len(self.layers) - 1) or True", "i <= len(self.layers) - 1", "i < len(self.layers) + 1")],
    *[("torch_ref.model.xǁMLPǁload_state_dict__mutmut_*", text,
       "check_state_dict has already refused missing, unexpected and misshapen keys, so strict loading has nothing "
       "left to check; strict=None/False and a default of False load the same numbers")
      for text in ("strict: bool = False", "strict=None", "load_state_dict(state_dict, assign=assign)")],
    *[("torch_ref.model.xǁMLPǁload_state_dict__mutmut_*", text,
       "assign=None is falsy, the same as the default assign=False: the values are copied in either way")
      for text in ("assign=None", "load_state_dict(state_dict, strict=strict, )")],
    ("torch_ref.model.xǁMLPǁloss__mutmut_*", "F.one_hot(y, out.shape[1]).to(None)",
     "the one-hot target's 0s and 1s are exact in any dtype and mse_loss promotes the integer target to the "
     "output's dtype: the same numbers"),
    ("manual.network.xǁMLPǁeval__mutmut_*", "return self.train(None)",
     "train() sets training = bool(mode), and bool(None) is False: eval mode either way"),
    *[("manual.network.xǁMLPǁloss__mutmut_*", text,
       "without the output activation's values the loss recomputes them from z with the same function (a = g(z)): "
       "the same numbers, computed twice") for text in ("self.output_activation, None).loss",
                                                         "self.output_activation, ).loss")],
    *[("manual.activations.x_*gelu__mutmut_*", f"np.clip(z, {bounds})",
       "beyond |z| = 100 tanh(u) is exactly ±1 in float32 and float64 and z³ stays finite with either bound: "
       "GELU and GELU' give the same numbers") for bounds in ("-101, 100", "-100, 101")],
    ("experiments.runs.stacked.xǁStackedMLPǁlosses__mutmut_*", "F.one_hot(y, classes).to(None)",
     "to(None) leaves the one-hot target int64, and out − target promotes an integer tensor to out's float dtype "
     "(it never widens a float one), so the 0/1 entries, the difference and the loss are bit for bit the same"),
    ("experiments.runs.stacked.xǁStackedTrainerǁ__init____mutmut_*", 'self.scheduler = ""',
     "the scheduler is only ever tested for truth (`if self.scheduler:` in end_epoch), and '' is false like None; "
     "a schedule replaces it with the scheduler object"),
    *[("experiments.runs.stacked.xǁStackedTrainerǁtrain_epoch__mutmut_*", text,
       "every parameter gets a gradient in every step, so zeroing the old gradients in place and letting backward "
       "add into them gives backward's gradient (0 + g = g; at most an exact zero's sign could differ, which no "
       "update rule here turns into a different value; two epochs of every optimizer came out bit for bit equal)")
      for text in ("self.opt.zero_grad(set_to_none=None)", "self.opt.zero_grad(set_to_none=False)")],
    ("experiments.runs.training.xǁ*Backendǁ__init____mutmut_*", 'self.scheduler = ""',
     "the scheduler is only tested for truth (`if self.scheduler:` in end_epoch), and '' is false like None; a "
     "schedule replaces it with the scheduler object"),
    *[("experiments.runs.training.xǁManualBackendǁevaluate__mutmut_*", text,
       "without the output activation's values the loss recomputes them from z with the same function (a = g(z)): "
       "the same numbers, computed twice") for text in ("self.net.output_activation, None).loss",
                                                         "self.net.output_activation, ).loss")],
    *[("experiments.runs.training.xǁManualBackendǁtrain_epoch__mutmut_*", text,
       "loss_and_grads then checks each batch's X and y again, which prepare() already checked (and cast to the "
       "network's dtype) for the whole split: nothing is converted, the same numbers, only slower")
      for text in ("validate=None)", "validate=True)", "self.net.loss_and_grads(X[idx], y[idx], )")],
    *[("experiments.runs.training.xǁTorchBackendǁtrain_epoch__mutmut_*", text,
       "the model's loss then checks each batch's X and y again, which prepare() already checked for the whole "
       "split: the same numbers, only slower") for text in ("validate=None)", "validate=True)",
                                                          "self.model.loss(X[idx], y[idx], )")],
    *[("experiments.runs.training.xǁTorchBackendǁtrain_epoch__mutmut_*", text,
       "gradients zeroed in place instead of dropped: backward then adds into zeros, the same gradient, and every "
       "parameter has one at every step (so no optimizer sees a missing gradient)")
      for text in ("zero_grad(set_to_none=None)", "zero_grad(set_to_none=False)")],
    *[("experiments.runs.training.xǁTorchBackendǁtrain_epoch__mutmut_*", text,
       "the clip count in float32 instead of int64: a sum of 0s and 1s is exact in float32 up to 2^24 steps, and "
       "an epoch has at most 50,000 (batch 1)")
      for text in ("clipped = torch.zeros((), dtype=None, device=self.device)",
                   "clipped = torch.zeros((), device=self.device)")],
    *[("manual.network.x_check_inputs__mutmut_*", text,
       "astype copies or not: the checked X is only read afterwards (never written in place), so the same numbers")
      for text in ("X = X.astype(dtype, copy=None)", "X = X.astype(dtype, )", "X = X.astype(dtype, copy=True)")],
    ("manual.network.xǁMLPǁtrace__mutmut_*", "if (validate) or True else X",
     "validating X again where the caller already did (validate=False is passed only with checked data): the "
     "same X, only slower"),
    *[("manual.network.*", text,
       "the first linear layer then also computes ∂E/∂X, the gradient with respect to the input images, which "
       "nothing reads (loss_and_grads returns the parameters' gradients): the same gradients, only slower")
      for text in ("input_grad=i >= 0, bias=not self.batch_norm)", "input_grad=len(hidden) >= 0)",
                   "grads = layers.linear_backward(dout, cache, )")],
    *[("manual.losses.xǁLossǁ__call____mutmut_*", text,
       "without the output activation's values the loss recomputes them from z with the same function (a = g(z)): "
       "the same numbers, computed twice") for text in ("self.fn(z, y, output, None)", "self.fn(z, y, output, )")],
    *[("torch_ref.model.xǁMLPǁloss__mutmut_*", text,
       "forward then checks X again, which loss() has just checked (or the training loop's prepare() did for the "
       "whole split): the same numbers, only slower")
      for text in ("self.forward(X, )", "self.forward(X, validate=True)", "self.forward(X, validate=None)")],
    # experiments.store: SQL is not case-sensitive, and fallbacks that read the same as what they replace
    *[("experiments.store.x*", text,
       "SQLite's keywords, pragma names and (quoted or not) identifiers are case-insensitive: the same statement")
      for text in ('"pragma data_version"', '"PRAGMA DATA_VERSION"', "' where \"key\" = ?'", "WHERE \"KEY\" = ?' if key",
                   '"select 1 from sqlite_master where', "'insert or replace into \"exports\"",
                   "'INSERT OR REPLACE INTO \"EXPORTS\"", "'select * from \"exports\"'", "'SELECT * FROM \"EXPORTS\"'",
                   "'select 1 from \"runs\" where", "'SELECT 1 FROM \"RUNS\" WHERE \"KEY\"",
                   "'delete from \"exports\" where", "'DELETE FROM \"EXPORTS\" WHERE \"NAME\"", 'or "ROWID"',
                   '"pragma journal_mode"', '"PRAGMA JOURNAL_MODE"', '"pragma journal_mode = wal"',
                   '"PRAGMA JOURNAL_MODE = WAL"', '"pragma synchronous = normal"', '"PRAGMA SYNCHRONOUS = NORMAL"',
                   '"begin immediate"', '"commit"', "'create table if not exists \"exports\"",
                   "'CREATE TABLE IF NOT EXISTS \"EXPORTS\" (\"NAME\"", "'\"mtime_ns\" integer)'",
                   "'\"MTIME_NS\" INTEGER)'")],
    *[("experiments.store.xǁDatabaseǁconnect__mutmut_*", text,
       "SQLite answers PRAGMA journal_mode in lower case, so 'XXwalXX' and 'WAL' only make every open switch a WAL "
       "database to WAL again (a no-op); without sqlite3.connect's timeout the PRAGMA busy_timeout just after "
       "sets the same 60 s wait")
      for text in ('.fetchone()[0] != "XXwalXX":', '.fetchone()[0] != "WAL":',
                   "con = sqlite3.connect(self.path, isolation_level=None,")],
    *[("experiments.store.xǁDatabaseǁ__init____mutmut_*", text,
       "only how long a wait between two retries of opening lasts, and whether the last retry falls exactly on "
       "the deadline: the database opened, or the same refusal")
      for text in ("time.sleep(random.uniform(1.01, 0.1))", "time.sleep(random.uniform(0.01, 1.1))",
                   "time.monotonic() >= deadline:")],
    *[("experiments.store.x_import_csv__mutmut_*", text,
       "where()'s default fill is NaN, which plain() stores as NULL like None; pandas lower-cases to_dict's orient")
      for text in ("df.astype(object).where(df.notna(), )", 'to_dict("RECORDS")')],
    ("experiments.store.xǁDatabaseǁinsert__mutmut_*", '" boolean"',
     "sqlite3 matches a declared type against its registered converters case-insensitively: BOOLEAN columns read "
     "back as booleans either way"),
    *[("experiments.store.x_finished_runs__mutmut_*", text,
       "the fallback for an empty epochs or layers table: grouping the empty table gives an empty Series too, and "
       "an empty Series of any dtype answers .get(key, 0) with 0 and has no epochs, so no run counts as whole "
       "either way")
      for text in ("if (len(epochs)) or True else", "if (len(layers)) or True else", "else pd.Series(dtype=None)")],
    ("experiments.store.x_finished_runs__mutmut_*", "if pd.notna(row.epochs_done) else -2",
     "a missing epochs_done must match no count of epoch rows: −1 and −2 both do (counts are 0 or more)"),
    ("experiments.store.x_finished_runs__mutmut_*", "index=runs.index, )",
     "a list of Python booleans makes a bool Series without being told (runs is never empty here: load_csv "
     "calls this only when it has rows)"),
    ("experiments.store.x_finished_runs__mutmut_*", "index=runs.index, dtype=None)",
     "a list of Python booleans makes a bool Series without being told (runs is never empty here: load_csv "
     "calls this only when it has rows)"),
    ("experiments.store.xǁDatabaseǁexport__mutmut_*", "only_stale: bool = True",
     "its one caller without the argument (Store.export) comes after writes that each deleted their table's "
     "exports entry in the same transaction (outdated), so every table changed since its file was written is "
     "written either way, and a file whose recorded size and time still match already holds the table"),
    ("experiments.store.xǁDatabaseǁexport__mutmut_*", "if (tables is not None) and False else self.read(name)",
     "the tables passed in are this database's own, read just before (load, Store.export): reading them again "
     "gives the same frames"),
    *[("experiments.store.xǁStoreǁexport__mutmut_*", text,
       "without the tables the export reads them from the same database: the same frames")
      for text in ("self.db.export(self.folder, None)", "self.db.export(self.folder, )")],
    *[("experiments.store.xǁStoreǁsave__mutmut_*", text,
       "the index of the concatenated plan is dropped by drop_duplicates' value comparison and by "
       "to_dict('records'); pandas lower-cases to_dict's orient; where()'s default fill is NaN, which plain() "
       "stores as NULL like None")
      for text in ("ignore_index=None)", "pd.concat([recorded, df], )", "ignore_index=False)",
                   "df.astype(object).where(df.notna(), )", 'to_dict("RECORDS")')],
    *[("experiments.store.x_read_csv__mutmut_*", text,
       "this pass only counts each line's fields (pandas reads the file again for the values); with newline='' "
       "(csv's advice) or universal newlines the lines split at the same places, and translating a \\r\\n "
       "inside a quoted field changes no count") for text in ('with open(path, newline=None) as f:',
                                                              'with open(path, ) as f:')],
    ("experiments.store.x_read_csv__mutmut_*", "if len(fields) <= len(header) else",
     "inside `if len(fields) != len(header)` the two counts differ, so ≤ and < say the same"),
    *[("experiments.store.x_load__mutmut_*", text,
       "without the tables the export reads them from the same database, just read by read_all: the same frames")
      for text in ("db.export(folder, None, only_stale=True)", "db.export(folder, only_stale=True)")],
    *[(f"experiments.runs.training.x_{function}__mutmut_*", text,
       "validation checks the inputs and returns them as they are when they already have the model's dtype, device "
       "and shape, which prepare() gave the split (its images and labels checked there): the same numbers, checked "
       "twice") for function in ("evaluate_torch", "probe_torch")
      for text in ("validate=None)", "validate=True)", "model.loss(X, y, )", "model(X, )")],
    ("experiments.runs.training.xǁRunRecorderǁ__init____mutmut_*", "self.result = RunResult(run=None)",
     "finish() sets the run row before the result is returned, and nothing reads it earlier"),
    *[("experiments.runs.training.xǁRunConfigǁkey__mutmut_*", text,
       "__post_init__ leaves every field a JSON type (plain Python ints and floats, layer_sizes a tuple of ints, "
       "strings, booleans, None), so json.dumps never calls its default: the same text, the same key")
      for text in ("sort_keys=True, default=None)", "sort_keys=True, )")],
    # experiments.stats
    *[("experiments.stats.x_compare_arms__mutmut_*", text,
       "the frame's columns are selected and ordered by df[COMPARISON_COLUMNS] before it is returned (and an empty "
       "one returns early); pandas lower-cases to_dict's orient; a sort on two columns ignores kind (pandas "
       "sorts several keys with a stable lexsort)")
      for text in ("df = pd.DataFrame(rows, columns=None)", "df = pd.DataFrame(rows, )", 'to_dict("RECORDS")',
                   "kind=None).reset_index(drop=True)", ").reset_index(drop=True)")],
    *[("experiments.stats.x_time_to_target__mutmut_*", text,
       "the epochs are sorted by key just before, so grouping with or without sorting the keys visits them in "
       "the same order") for text in ('groupby("key", sort=None)', 'groupby("key", )', 'groupby("key", sort=True)')],
    ("experiments.stats.x_time_to_target__mutmut_*", 'run["val_acc"].to_numpy(dtype=None)',
     "val_acc is a float column (every epochs table is read with its numbers checked), so the array is float "
     "either way"),
    ("experiments.stats.x_seeds_disagree__mutmut_*", "len(x) >= 1 and x.max() - x.min()",
     "one value spans 0 points, never more than 5: the same answer as not looking"),
    ("experiments.stats.xǁIntervalǁformat__mutmut_*", 'spec: str = ".4F"',
     "F differs from f only in writing INF and NAN in capitals; an Interval's mean and bounds come from finite "
     "values (stats.finite drops the rest), and a NaN bound (n = 1) is written as (n=1) before the spec is used"),
    ("experiments.stats.xǁIntervalǁformat__mutmut_*", "low.rstrip('XX%XX')",
     "rstrip strips any of the characters X and %: a formatted number never ends in X"),
    *[("experiments.stats.x_power_paired_t__mutmut_*", text,
       "this branch runs only where scipy's noncentral t fails, far in the tail (noncentrality 10 or more): "
       "there the second term, Φ(−c − nc) or Φ(c − nc), is below 1e-15 and the power is 1.0 either way")
      for text in ("sps.norm.sf(critical - nc) - sps.norm.cdf(-critical - nc)",
                   "sps.norm.sf(critical - nc) + sps.norm.cdf(+critical - nc)")],
    *[("experiments.stats.x_paired__mutmut_*", text,
       "this branch runs with n ≥ 2 differences, and every one equals d[0] exactly when every one equals d[1] "
       "(inside the branch d[1] is d[0]): the same test, the same value")
      for text in ("if np.all(d == d[1]):", "1.0 if d[1] == 0 else 0.0")],
    ("experiments.stats.x_holm__mutmut_*", "np.full_like(p, None)",
     "p is a float array, and None converted to float is NaN: the same fill"),
    *[("experiments.stats.x_holm__mutmut_*", text,
       "the sort's kind only orders tied p-values, and ties get the same adjusted value in either order: the first "
       "of a tie at rank r gets (m − r)·p, which the running maximum carries to the next")
      for text in ('kind=None)]', 'np.argsort(p[idx], )]', 'kind="STABLE")]')],
    ("experiments.stats.x_verdict__mutmut_*", "if diff >= 0 else (arm_b, arm_a)",
     "differs only at a mean difference of exactly 0 with p_Holm < α; p_Holm is Holm's adjustment (never "
     "smaller) of the paired t-test's p, which is 1 at a mean difference of 0 (t = 0, or no spread): that branch "
     "never sees diff = 0"),
    *[("experiments.stats.x_seeds_needed__mutmut_*", text,
       "the power is a continuous function of n's noncentrality: it equals the target exactly on no integer n "
       "met in practice, so < and <= (>= and >) choose the same n")
      for text in ("alpha) <= power:", "alpha) > power:")],
]

# Mutants that do change a result, but only on a CUDA GPU (where tests/test_agreement.py::test_agreement_on_cuda
# runs): on a CPU-only machine no test can tell them apart. They stay in the "not killed" count.
CUDA_ONLY = [
    *[("torch_ref.*", text, "only a CUDA run can tell: on the CPU the tensors land on the CPU either way")
      for text in ("device=None", "torch.as_tensor(np.asarray(v), )", "dtype=dtype, )", "nn.Linear(n_in, n_out, dtype=dtype, )",
                   "y.to(None, torch.long)", "y.to(torch.long)", "X.to(None, first.dtype)", "X.to(first.dtype)")],
    *[("experiments.runs.stacked.x_train_stacked__mutmut_*", f"training.split_to_torch(data.{split}, dtype, None)",
       "only a CUDA run can tell: with device None the split's tensors stay on the CPU, where trainer.device puts "
       "them on a CPU run too") for split in ("train", "val", "test")],
    *[("experiments.runs.stacked.xǁStackedMLPǁ__init____mutmut_*", text,
       "only a CUDA run can tell: without the device the twins' parameters are made on the CPU, where a CPU run "
       "makes them anyway") for text in ("dtype=c.dtype, device=None)", "dtype=c.dtype, )")],
    *[("experiments.runs.stacked.xǁStackedTrainerǁ__init____mutmut_*", text,
       "only a CUDA run can tell: with device None the stacked parameters / the per-model rates are made on the "
       "CPU, where a CPU run makes them anyway")
      for text in ("self.net = StackedMLP(configs, None)", "dtype=dtype, device=None)",
                   "torch.tensor([c.lr for c in configs], dtype=dtype, )")],
    *[("experiments.runs.stacked.xǁStackedTrainerǁtrain_epoch__mutmut_*", text,
       "only a CUDA run can tell: with device None the batch orders / the loss sums stay on the CPU, where a CPU "
       "run holds them anyway")
      for text in ("torch.from_numpy(np.ascontiguousarray(orders)).to(None)", "dtype=X.dtype, device=None)",
                   "dtype=X.dtype, )")],
    *[("experiments.runs.stacked.xǁStackedTrainerǁsync__mutmut_*", text,
       "only a CUDA run can tell: it drops the CUDA synchronisation around the timed loop (CUDA epoch times would "
       "count only kernel launches); on the CPU self.device is 'cpu' and the branch is never taken either way")
      for text in ('if self.device == "XXcudaXX":', 'if self.device == "CUDA":')],
    *[("experiments.runs.training.x_resolve_device__mutmut_*", text,
       "only a CUDA run can tell: it changes the name \"auto\" resolves to where torch.cuda.is_available() is true; "
       "on the CPU \"auto\" is \"cpu\" either way")
      for text in ('(torch.cuda.is_available()) and False else "cpu"', '"XXcudaXX" if torch.cuda.is_available()',
                   '"CUDA" if torch.cuda.is_available()')],
    *[("experiments.runs.training.x_split_to_torch__mutmut_*", text,
       "only a CUDA run can tell: without the device the split's tensors stay on the CPU, where a CPU run puts them "
       "anyway") for text in (".to(None, dtype) / 255", "torch.from_numpy(split.images).to(dtype) / 255",
                              "torch.from_numpy(split.labels).to(None)")],
    *[("experiments.runs.training.xǁTorchBackendǁsync__mutmut_*", text,
       "only a CUDA run can tell: it drops the CUDA synchronisation before an epoch's time is read; on the CPU "
       "self.device is 'cpu' and the branch is never taken either way")
      for text in ('if self.device == "XXcudaXX":', 'if self.device == "CUDA":')],
    *[("experiments.runs.training.xǁTorchBackendǁ*", text,
       "only a CUDA run can tell: without the device the model, the split, the batch order or the epoch's sums "
       "are made on the CPU, where a CPU run makes them anyway")
      for text in ("dtype=config.dtype, device=None, batch_norm", "dtype=config.dtype, batch_norm=config.batch_norm)",
                   "self.model.layers[0].weight.dtype, None)", "torch.from_numpy(order).to(None)",
                   "dtype=X.dtype, device=None)", "dtype=X.dtype, )", "dtype=torch.int64, device=None)",
                   "dtype=torch.int64, )")],
]

# The bugs issue 15 found slipping through, planted one at a time; each must be killed by a torch-free test.
PLANTED = [
    ("He initialisation with fan-out", "manual/init.py", "np.sqrt(2.0 / fan_in)", "np.sqrt(2.0 / fan_out)"),
    ("run key ignores weight_decay", "experiments/runs/training.py", "if getattr(self, f.name) != f.default}",
     "if getattr(self, f.name) != f.default and f.name != 'weight_decay'}"),
    ("output layer counted in the hidden means", "experiments/report/study.py",
     'layers["layer"] < layers.groupby("key")', 'layers["layer"] <= layers.groupby("key")'),
    ("saturated: any over the probe images", "experiments/runs/training.py",
     "np.mean(act.saturated(activation))", "np.mean(np.any(act.saturated(activation), axis=0))"),
    ("saturated: all over the probe images", "experiments/runs/training.py",
     "np.mean(act.saturated(activation))", "np.mean(np.all(act.saturated(activation), axis=0))"),
    ("dead: any instead of all", "experiments/runs/training.py", "np.all(derivative == 0, axis=0)",
     "np.any(derivative == 0, axis=0)"),
    ("same shuffle every epoch (batch_order)", "experiments/runs/training.py", "default_rng([seed, epoch])",
     "default_rng(seed)"),
    ("same shuffle every epoch (the loop)", "experiments/runs/training.py",
     "batch_order(config.seed, epoch, len(train_y))", "batch_order(config.seed, 1, len(train_y))"),
    ("explicit weight decay 0.0 replaced by the default", "experiments/runs/training.py",
     'if self.weight_decay is not None:\n            kwargs["weight_decay"]',
     'if self.weight_decay:\n            kwargs["weight_decay"]'),
    ("RMSprop ε inside the square root", "manual/optim/__init__.py", "avg = np.sqrt(v) + self.eps",
     "avg = np.sqrt(v + self.eps)"),
    ("Nesterov replaced by plain momentum", "manual/optim/__init__.py",
     "g = g + self.momentum * buf if self.nesterov else buf", "g = buf"),
]


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
    tests = sorted(tests, key=lambda t: (not t.startswith("tests/test_facts_"), duration.get(t, math.inf), t))
    out = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                         cwd=ROOT / "mutants", env=env, capture_output=True, text=True).stdout
    failed = re.findall(r"^FAILED (.+?)(?: - .*)?$", out, re.M)
    return failed[0] if failed else "?"


def previous_rows() -> dict:
    path = OUT / "mutants.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["mutant"]: row for row in csv.DictReader(f)}


def check_planted() -> list[tuple[str, str, list[str]]]:
    """Plant each bug of ``PLANTED`` in the working tree, run the torch-free fact tests, restore the file."""
    facts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_facts_*.py"))
    results = []

    def interrupted(*_):  # a SIGTERM (a killed run) unwinds through ``finally`` too: no bug left planted
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        return plant_each(facts, results)
    finally:
        signal.signal(signal.SIGTERM, previous)


def plant_each(facts: list[str], results: list) -> list[tuple[str, str, list[str]]]:
    for what, path, old, new in PLANTED:
        file = ROOT / path
        text = file.read_text()
        if text.count(old) != 1:
            results.append((what, path, [f"(not planted: the line {old!r} is no longer in {path})"]))
            continue
        try:
            file.write_text(text.replace(old, new))
            out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not torch",
                                  *facts], cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        finally:
            file.write_text(text)
        results.append((what, f"{path}: `{old}` → `{new}`", re.findall(r"^FAILED (.+?)(?: - .*)?$", out, re.M)))
    return results


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
                  and (before.get(r["mutant"], {}).get("status") == "survived" or r["killed_by"] == "?")]
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
             f"Tool: mutmut {mutmut_version()}, Python {sys.version.split()[0]}, on a 2-core CPU shared with other "
             "jobs. The results below are mutmut's as they stand after these runs (each continues the last; "
             "mutmut keeps its verdicts in `mutants/`):", ""]
    lines += [f"- `{r['command']}` ({r['started']}, {r['minutes']} min, {r['mutants']} mutants)" for r in runs]
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
        lines += ["", "## Planted bugs (issue 15), each caught by a torch-free test", "",
                  "Planted one at a time in the working tree by `python -m experiments.mutation --planted`, which "
                  "runs `tests/test_facts_*.py -k 'not torch'` and restores the file.", ""]
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
    try:
        import tomllib  # Python ≥ 3.11
    except ImportError:
        return
    selection = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"].get(
        "pytest_add_cli_args_test_selection", [])
    missing = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "tests").glob("test_facts_*.py"))
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
        start, started = time.perf_counter(), time.strftime("%Y-%m-%d %H:%M")
        stopped = run_mutmut(names, args.max_children, args.time_limit) if names or not args.patterns else False
        command = "python -m experiments.mutation " + shlex.join(argv if argv is not None else sys.argv[1:])
        asked = set(names)
        reached = sum(r["status"] != "not checked" for r in collect() if r["mutant"] in asked)
        mutants = f"{reached} of {len(names)}" if names else "all"
        runs = recorded_runs()  # read now, not at the start: another run or an edit may have changed it
        runs.append({"command": command.strip(), "started": started,
                     "minutes": round((time.perf_counter() - start) / 60, 1),
                     "mutants": mutants + (" (stopped at the time limit)" if stopped else "")})
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
