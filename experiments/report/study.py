"""A study folder read back: its tables, its spec, and the numbers every table, plot and finding uses.

Nothing here knows a study by name: the compare axis, the tuned keys and the time-to-result target come
from the folder's ``spec.json`` (written by ``experiments.plan``), with neutral defaults for a folder
without one.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments import store as results_store
from experiments.errors import UserError
from experiments.spec import DEFAULT_TARGET
from experiments.config import RunConfig
from experiments.stats import accuracy_ci, compare_arms, mean_ci, seeds_disagree, time_to_target

CONFIG_COLUMNS = [f.name for f in dataclasses.fields(RunConfig)]
CURVE_METRICS = ("train_loss", "val_loss", "val_acc")
COINCIDE = 1e-6  # learning curves closer than this on every seed and epoch coincide
MARKERS = "osD^vP*Xhp<>"


class ReportError(UserError):
    """A folder that holds no study."""


@dataclass
class Study:
    """A study folder's tables, with the plan joined to the finished runs."""

    folder: Path
    name: str
    tables: results_store.Tables
    tune: pd.DataFrame  # phase "tune": the tuning seeds at each candidate
    final: pd.DataFrame  # phase "seeds": the final seeds at the chosen candidate
    groups: list
    arms: list  # every arm name, in the plan's order
    spec: dict = field(default_factory=dict)

    @property
    def compare(self) -> str:
        """What the arms are, in words: the spec's compare axis (``layer_sizes`` → "layer sizes")."""
        return str(self.spec.get("compare", "arm")).replace("_", " ")

    @property
    def tuned(self) -> list:
        return [k for k in self.spec.get("tuned", ["lr"] if len(self.tune) else []) if k in self.final.columns
                or k in self.tune.columns]

    @property
    def target(self) -> float:
        return float(self.spec.get("target", DEFAULT_TARGET))

    @property
    def baseline(self) -> str | None:
        """The spec's ``baseline``: the compare label each group's other arms are measured against."""
        name = self.spec.get("baseline")
        return name if name in self.arms else None

    @property
    def group_axes(self) -> list:
        """The grid axes that make the groups, in the spec's order (``spec.json``'s ``groups``)."""
        return list(self.spec.get("groups", []))

    def group_labels(self, group: str) -> dict | None:
        """The label of each group axis for ``group`` (``{"activation": "relu", "init": "he", ...}``), or
        None when it cannot be told: from ``spec.json``'s ``axes`` when it lists the labels, else by splitting
        the group's name (the labels joined by ", ") when that gives one part per axis."""
        axes = self.group_axes
        if not axes:
            return None
        labels = self.spec.get("axes", {})
        if all(a in labels for a in axes):
            for combo in itertools.product(*(labels[a] for a in axes)):
                if ", ".join(combo) == group:
                    return dict(zip(axes, combo))
            return None
        parts = group.split(", ")
        return dict(zip(axes, parts)) if len(parts) == len(axes) else None

    def arms_of(self, group: str) -> list:
        names = self.tables.plan.loc[self.tables.plan["group"] == group, "arm"]
        return list(pd.unique(names))

    def runs_of(self, group: str, arm: str, phase: str = "seeds") -> pd.DataFrame:
        df = self.final if phase == "seeds" else self.tune
        return df[(df["group"] == group) & (df["arm"] == arm)]

    def color(self, arm: str):
        return f"C{self.arms.index(arm) % 10}"

    def marker(self, arm: str) -> str:
        return MARKERS[self.arms.index(arm) % len(MARKERS)]

    def offset(self, group: str, arm: str, spread: float = 0.25) -> float:
        """A small shift of ``arm`` within its group (centred on 0), so that arms which coincide stay visible."""
        arms = self.arms_of(group)
        if len(arms) < 2:
            return 0.0
        return spread * (arms.index(arm) / (len(arms) - 1) - 0.5)


def latest_configs(final: pd.DataFrame) -> pd.DataFrame:
    """Per (group, arm), the final runs of the configuration planned last (``plan.csv`` keeps every
    rerun's rows; an arm rerun with, say, more epochs is reported with its new runs, not a mixture)."""
    if not len(final):
        return final
    columns = [c for c in CONFIG_COLUMNS if c in final.columns and c != "seed"]
    signature = final[columns].apply(lambda column: column.map(str)).agg("|".join, axis=1)
    last = signature.groupby([final["group"], final["arm"]]).transform("last")
    return final[signature == last].reset_index(drop=True)


def read_spec_json(path: Path) -> dict:
    """The resolved spec a study wrote beside its results ({} when absent); a damaged one is a ``ReportError``."""
    if not path.exists():
        return {}
    try:
        spec = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        spec = f"not JSON ({' '.join(str(err).split())})"
    if not isinstance(spec, dict):
        reason = spec if isinstance(spec, str) else f"a JSON {type(spec).__name__}, not an object"
        raise ReportError(f"{path} is damaged: {reason}; rerun the study command (it rewrites spec.json and trains "
                          f"nothing it has) or delete the file to report with neutral wording")
    return spec


def open_study(folder: Path | str) -> Study:
    folder = Path(folder)
    tables = results_store.load(folder)
    if not len(tables.plan):
        raise ReportError(f"{folder} holds no plan.csv: it is not a study folder (run a study command first)")
    spec = read_spec_json(folder / "spec.json")
    merged = tables.plan.merge(tables.runs, on="key", how="inner") if len(tables.runs) else tables.plan.iloc[:0]
    final = merged[merged["phase"] == "seeds"].drop_duplicates(["group", "arm", "key"]).reset_index(drop=True)
    return Study(folder=folder, name=str(tables.plan["study"].iloc[-1]), tables=tables,
                 tune=merged[merged["phase"] == "tune"].drop_duplicates(["group", "arm", "key"])
                 .reset_index(drop=True),
                 final=latest_configs(final), groups=list(pd.unique(tables.plan["group"])),
                 arms=list(pd.unique(tables.plan["arm"])), spec=spec)


# --------------------------------------------------------------------------- numbers per arm
def tuned_text(study: Study, runs: pd.DataFrame) -> str:
    """The chosen values of the tuned keys, ``lr 0.03``; "–" when nothing was tuned."""
    if not study.tuned or not len(runs):
        return "–"
    return ", ".join(f"{k} {runs[k].iloc[0]:g}" if isinstance(runs[k].iloc[0], (float, np.floating))
                     else f"{k} {runs[k].iloc[0]}" for k in study.tuned)


def arm_summary(study: Study) -> pd.DataFrame:
    """One row per (group, arm) of the final seeds: chosen values, runs, test and validation accuracy with
    bounded 95% intervals, seeds that disagree, time to the validation target."""
    reach = time_to_target(study.tables.epochs[study.tables.epochs["key"].isin(study.final["key"])],
                           study.target).set_index("key")
    rows = []
    for group in study.groups:
        for arm in study.arms_of(group):
            runs = study.runs_of(group, arm)
            if not len(runs):
                continue
            ok = runs[runs["status"] == "ok"]
            hit = reach.reindex(runs["key"])
            diverged = runs[runs["status"] == "diverged"]
            rows.append({"group": group, "arm": arm, "tuned": tuned_text(study, runs), "runs": len(runs),
                         "ok": len(ok), "test": accuracy_ci(ok["test_acc"]), "val": accuracy_ci(ok["final_val_acc"]),
                         "train_loss": mean_ci(ok["final_train_loss"]), "time": runs["wall_time_s"].mean(),
                         "diverged": len(diverged),
                         "diverged_epochs": sorted(set(diverged["epochs_done"].astype(int))) if len(diverged) else [],
                         # an arm whose every seed diverged counts too: nothing of it can be compared
                         "disagree": seeds_disagree(runs["test_acc"], runs["status"]) or len(diverged) == len(runs),
                         "reached": int(hit["epoch"].notna().sum()),
                         "reach_epoch": float(hit["epoch"].median()), "reach_s": float(hit["seconds"].median()),
                         "spread": (ok["test_acc"].min(), ok["test_acc"].max()) if len(ok) else (math.nan,) * 2})
    return pd.DataFrame(rows)


def comparisons(study: Study, metric: str = "test_acc") -> pd.DataFrame:
    """Every pair of arms within each group, compared seed by seed (``experiments.stats.compare_arms``)."""
    frames = []
    for group in study.groups:
        runs = study.final[study.final["group"] == group]
        if runs["arm"].nunique() < 2:
            continue
        values = runs.assign(value=runs[metric].where(runs["status"] == "ok")).pivot_table(
            index="seed", columns="arm", values="value", aggfunc="first", dropna=False)
        values = values[[a for a in study.arms_of(group) if a in values.columns]]
        frames.append(compare_arms(values, group, metric))
    from experiments.stats import COMPARISON_COLUMNS

    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COMPARISON_COLUMNS)


def curves(study: Study, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per epoch: one row per run (indexed by key), one column per epoch."""
    epochs = study.tables.epochs
    return epochs[epochs["key"].isin(runs["key"])].pivot(index="key", columns="epoch", values=metric)


def curve_differences(study: Study) -> dict:
    """(group, arm_a, arm_b) → DataFrame (epoch × metric) of the largest |a − b| over the seeds both finished,
    for the pairs whose curves coincide (every value below ``COINCIDE``)."""
    out = {}
    for group in study.groups:
        arms = study.arms_of(group)
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                diffs = {}
                for metric in CURVE_METRICS:
                    per_seed = []
                    ra, rb = study.runs_of(group, a), study.runs_of(group, b)
                    for seed in sorted(set(ra["seed"]) & set(rb["seed"])):
                        ca = curves(study, ra[ra["seed"] == seed], metric)
                        cb = curves(study, rb[rb["seed"] == seed], metric)
                        if len(ca) and len(cb):
                            per_seed.append((ca.iloc[0] - cb.iloc[0]).abs())
                    if per_seed:
                        diffs[metric] = pd.concat(per_seed, axis=1).max(axis=1)
                if diffs and all(float(d.max()) < COINCIDE for d in diffs.values()):
                    out[(group, a, b)] = pd.DataFrame(diffs)
    return out


# --------------------------------------------------------------------------- per-layer diagnostics
def is_hidden(layers: pd.DataFrame) -> pd.Series:
    """Which rows of a ``layers.csv`` table are hidden layers: all but each run's last (the output layer)."""
    return layers["layer"] < layers.groupby("key")["layer"].transform("max")


def layer_means(study: Study, epoch: str) -> pd.DataFrame:
    """Per-layer diagnostics at initialisation (``epoch="init"``) or at each ok run's last epoch (``"end"``),
    averaged over the seeds of each (group, arm); ``hidden`` marks the hidden layers."""
    runs = study.final
    if epoch == "end":
        runs = runs[runs["status"] == "ok"]
    layers = study.tables.layers.merge(runs[["key", "group", "arm", "epochs_done"]], on="key")
    at = layers["epochs_done"] if epoch == "end" else 0
    layers = layers[layers["epoch"] == at].copy()
    layers["hidden"] = is_hidden(layers)
    stats = ["grad_norm", "dead_frac", "saturated_frac", "act_mean", "act_std"]
    return layers.groupby(["group", "arm", "layer", "hidden"], sort=False)[stats].mean().reset_index()


DEAD_PROBE = np.linspace(-5.0, 5.0, 1001)  # where f' is searched for an interval of exact zeros (float64)


def inactive_measure(activation, saturated_recorded: bool = False, dead_recorded: bool = False) -> str | None:
    """Which measure of inactive units applies to ``activation`` (a name):

    - "saturated" when it defines flat tails (``Activation.saturated``: sigmoid, tanh), where f' ≈ 0;
    - "dead" when f' is exactly 0 on an interval of z (ReLU's z < 0), searched for in float64 on z in
      [−5, 5], where no rounding makes a 0 (f' underflows to 0 only far out in a tail: GELU's for
      z < −7 in float64, softplus's in float32 below z ≈ −88);
    - None when neither applies: f' > 0 everywhere (leaky ReLU, ELU, softplus, identity) or 0 at isolated
      points only (GELU, Swish), so no unit can be dead, and no flat tails are defined.

    An activation this process does not know (a plug-in that is not loaded: the report reads CSV files and
    runs no plug-in code) is judged by what its runs recorded: "saturated" when they measured saturation,
    "dead" when some unit was recorded dead, else None."""
    act = registered(activation)
    if act is None:
        return "saturated" if saturated_recorded else "dead" if dead_recorded else None
    if act.saturated is not None:
        return "saturated"
    with np.errstate(all="ignore"):
        zero = np.asarray(act.df(DEAD_PROBE), dtype=float) == 0
    return "dead" if bool(np.any(zero[1:] & zero[:-1])) else None


def registered(activation):
    """The ``manual.activations`` record of ``activation`` in this process, or None (e.g. a plug-in not loaded)."""
    from manual.activations import ACTIVATIONS

    return ACTIVATIONS.get(str(activation))


def study_order(study: Study, df: pd.DataFrame) -> pd.DataFrame:
    """``df``'s rows (with group and arm columns) in the plan's order: group by group, arms as planned."""
    if not len(df):
        return df
    groups, arms = {g: i for i, g in enumerate(study.groups)}, {a: i for i, a in enumerate(study.arms)}
    order = [(groups.get(g, len(groups)), arms.get(a, len(arms))) for g, a in zip(df["group"], df["arm"])]
    return df.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def diagnostics(study: Study) -> pd.DataFrame:
    """One row per (group, arm), in the plan's order: first- and last-layer gradient norms (and the largest
    layer's) at initialisation and at the end, dead and saturated hidden fractions.

    ``inactive``: the measure that applies to the arm's activation (``inactive_measure``): "dead",
    "saturated", or missing (NaN) when neither does. ``finished``: whether any final seed finished (else the
    end columns are NaN).
    """
    rows = []
    start, end = layer_means(study, "init"), layer_means(study, "end")
    activation = {} if "activation" not in study.final.columns else \
        study.final.groupby(["group", "arm"], sort=False)["activation"].first().to_dict()
    if "layers" in study.final.columns:  # a layer list without the placeholder names its activations itself
        for (group, arm), layers in study.final.groupby(["group", "arm"], sort=False)["layers"].first().items():
            if isinstance(layers, str) and "activation" not in layers.split(" | "):
                activation[(group, arm)] = None
    for (group, arm), init in start.groupby(["group", "arm"], sort=False):
        last = end[(end["group"] == group) & (end["arm"] == arm)]
        row = {"group": group, "arm": arm, "layers": len(init), "finished": bool(len(last)),
               "activation": activation.get((group, arm))}
        for when, df in (("init", init), ("end", last)):
            hidden = df[df["hidden"]]
            row[f"grad_first_{when}"] = df["grad_norm"].iloc[0] if len(df) else math.nan
            row[f"grad_last_{when}"] = df["grad_norm"].iloc[-1] if len(df) else math.nan
            row[f"grad_max_{when}"] = df["grad_norm"].max() if len(df) else math.nan
            row[f"dead_{when}"] = hidden["dead_frac"].mean()
            row[f"dead_max_{when}"] = hidden["dead_frac"].max()
            row[f"saturated_{when}"] = hidden["saturated_frac"].mean()
        recorded = not np.isnan(row["saturated_init"])
        dead = bool((init["dead_frac"][init["hidden"]].fillna(0) > 0).any() or
                    (last["dead_frac"][last["hidden"]].fillna(0) > 0).any())
        dead_recorded = not np.isnan(row["dead_init"])
        row["inactive"] = inactive_measure(row["activation"], recorded, dead) if row["activation"] is not None \
            else "saturated" if recorded else "dead" if dead_recorded else None
        rows.append(row)
    df = study_order(study, pd.DataFrame(rows))
    if len(df):
        for when in ("init", "end"):
            df[f"grad_ratio_{when}"] = df[f"grad_first_{when}"] / df[f"grad_last_{when}"]
            df[f"inactive_{when}"] = np.select([df["inactive"] == "dead", df["inactive"] == "saturated"],
                                               [df[f"dead_{when}"], df[f"saturated_{when}"]], math.nan)
    return df


# --------------------------------------------------------------------------- clipping and tuning
def clipping(study: Study) -> pd.DataFrame:
    """One row per (group, arm) whose final runs clip their gradients: the setting, and the fraction of
    steps whose gradients clipping changed (``clip_frac`` of epochs.csv), averaged over the seeds' epochs
    (``mean``), in the first epoch and in the last one recorded."""
    columns = ["group", "arm", "setting", "mean", "first", "last", "epochs"]
    kinds = [c for c in ("clip_grad_norm", "clip_grad_value") if c in study.final.columns]
    if not kinds or "clip_frac" not in study.tables.epochs.columns or not len(study.final):
        return pd.DataFrame(columns=columns)
    clipped = study.final[study.final[kinds].notna().any(axis=1)]
    epochs = study.tables.epochs.merge(clipped[["key", "group", "arm"]], on="key")
    rows = []
    for (group, arm), runs in clipped.groupby(["group", "arm"], sort=False):
        e = epochs[(epochs["group"] == group) & (epochs["arm"] == arm)]
        per_epoch = e.groupby("epoch")["clip_frac"].mean()
        first = runs.iloc[0]
        setting = ", ".join(f"{k.replace('clip_grad_', '')} {float(first[k]):g}" for k in kinds if pd.notna(first[k]))
        rows.append({"group": group, "arm": arm, "setting": setting, "mean": float(e["clip_frac"].mean()),
                     "first": float(per_epoch.iloc[0]) if len(per_epoch) else math.nan,
                     "last": float(per_epoch.iloc[-1]) if len(per_epoch) else math.nan, "epochs": len(per_epoch)})
    return study_order(study, pd.DataFrame(rows, columns=columns))


def tuning_edges(study: Study) -> pd.DataFrame:
    """The tuned choices at the edge of their arm's grid: one row per (group, arm, key) whose chosen value
    is the largest ("top") or smallest ("bottom") of two or more numeric candidates, unless every candidate
    scored the same (then the first is kept by the tie rule, and no value beyond would do better)."""
    columns = ["group", "arm", "key", "value", "edge"]
    rows = []
    for group in study.groups:
        for arm in study.arms_of(group):
            tune, chosen = study.runs_of(group, arm, "tune"), study.runs_of(group, arm)
            if not len(tune) or not len(chosen):
                continue
            keys = [k for k in study.tuned if k in tune.columns]
            scores = tune.groupby(keys)["final_val_acc"].mean() if keys else pd.Series(dtype=float)
            if scores.nunique() < 2:
                continue
            for key in keys:
                if not pd.api.types.is_numeric_dtype(tune[key]):
                    continue
                values = sorted(tune[key].dropna().unique())
                value = chosen[key].iloc[0]
                if len(values) < 2 or pd.isna(value):
                    continue
                edge = "top" if np.isclose(value, values[-1]) else "bottom" if np.isclose(value, values[0]) else None
                if edge:
                    rows.append({"group": group, "arm": arm, "key": key, "value": float(value), "edge": edge})
    return pd.DataFrame(rows, columns=columns)
