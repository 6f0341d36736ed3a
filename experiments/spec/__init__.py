"""A study is a TOML file: its schema, its loader, and the one-line errors that name the key and the line.

```toml
name = "relu-vs-gelu"                  # the study's name: its folder is results/<name>
description = "..."                    # optional: one sentence for the report
plugins = ["examples/mish.py"]         # optional: plug-in files or "module:attr" (experiments.plugins)
compare = "activation"                 # the grid axis the report compares (optional with one grid key)
seeds = 5                              # final seeds: a count (fresh seeds, never a tuning seed) or a list
target = 0.97                          # optional: the validation accuracy "time to result" waits for
baseline = "relu"                      # optional: the compare label the others are measured against
[base]                                 # RunConfig fields shared by every run (the options of `train`)
optimizer = "Adam"
[grid]                                 # the cross product gives the arms; keys other than compare: groups
activation = ["relu", "gelu", "mish"]
layer_sizes = [[784, 256, 256, 10], [784, 64, 64, 64, 64, 10]]
[tune]                                 # optional: chosen per arm on validation before the final seeds
lr = [1e-4, 3e-4, 1e-3, 3e-3]
seeds = 2                              # tuning seeds (count or list); chosen by their MEAN val accuracy
[quick]                                # optional: what --quick changes, as dotted keys (like --set)
"base.train_subset" = 10000
```

A grid axis holds either plain values of one RunConfig field (``activation = ["relu", "gelu"]``) or
*bundles*: tables of several fields with a ``label`` and optionally their own ``tune`` table, for arms
that are more than one field (``{label = "Nesterov", optimizer = "SGD", momentum = 0.9, nesterov = true,
tune = {lr = [0.003, 0.01, 0.03]}}``). An override (``--set``/``[quick]``) that gives a bundle axis a list
of strings keeps the bundles with those labels.

``load_spec(path, overrides)`` returns a ``Spec`` whose values are all checked: every ``[base]``,
``[grid]`` and ``[tune]`` key is a ``RunConfig`` field with a value of the field's type, and every arm's
config is built once, so an unknown activation or an optimizer that takes no momentum is reported here,
before anything trains, as ``SpecError: spec.toml line 7: grid.activation: unknown activation 'foo'...``.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import UserError
from experiments.config import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_KEYS = ("name", "description", "plugins", "compare", "seeds", "target", "baseline", "base", "grid", "tune",
            "quick")
TABLES = ("base", "grid", "tune", "quick")
FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
SPEC_ONLY = ("seed",)  # set by the spec's seeds, never by [base]/[grid]/[tune]
DEFAULT_TUNE_SEEDS = 2
DEFAULT_TARGET = 0.97  # AlgoPerf's MNIST validation target


class SpecError(UserError):
    """A mistake in a study spec (or a --set override), told in one line with the key and the line."""


@dataclass(frozen=True)
class Axis:
    """One grid key: its name, and per value the RunConfig fields it sets, its label and its own tune grid."""

    name: str
    values: tuple  # of dicts: RunConfig fields
    labels: tuple  # of str
    tunes: tuple  # of dicts (key → candidate list), {} when the value has no tune table of its own


@dataclass(frozen=True)
class Spec:
    name: str
    compare: str
    seeds: tuple  # final seeds
    base: dict
    axes: tuple  # of Axis, in the file's order
    tune: dict  # key → candidate list (shared by every arm unless a bundle overrides it)
    tune_seeds: tuple = ()
    plugins: tuple = ()
    target: float = DEFAULT_TARGET
    description: str = ""
    source: str = "<spec>"
    baseline: str = ""  # a label of the compare axis, or "" for none: the arm each group's others are measured against

    @property
    def group_axes(self) -> tuple:
        return tuple(a for a in self.axes if a.name != self.compare)

    def to_dict(self) -> dict:
        """The resolved spec, as the report reads it back from the study's ``spec.json``."""
        return {"name": self.name, "description": self.description, "compare": self.compare,
                "seeds": list(self.seeds), "tune_seeds": list(self.tune_seeds), "target": self.target,
                "tuned": sorted({k for a in self.axes for t in a.tunes for k in t} | set(self.tune)),
                "groups": [a.name for a in self.group_axes], "plugins": list(self.plugins),
                "baseline": self.baseline or None, "axes": {a.name: list(a.labels) for a in self.axes},
                "base": {k: list(v) if isinstance(v, tuple) else v for k, v in self.base.items()}}


# --------------------------------------------------------------------------- where a key is in the file
class Lines:
    """Finds the line of a key in the spec's text (tomllib keeps no positions): the key's assignment in
    its table (the i-th ``[[grid.key]]`` for ``grid.key[i]``), else the table's header. Values that came
    from ``--set`` or the ``[quick]`` table are reported as such."""

    def __init__(self, text: str, source: str):
        self.lines, self.source = text.splitlines(), source
        self.overridden: dict = {}  # spec path → where its value came from

    def line_of(self, table: str, key: str, index: int | None = None, field: str | None = None) -> int | None:
        """The line assigning ``key`` in ``[table]`` ("" = the top level); ``index``/``field`` for the
        field of the index-th element of an array of tables ``[[table.key]]``."""
        current, header_line, seen = "", None, -1
        for number, line in enumerate(self.lines, 1):
            stripped = line.split("#")[0].strip()
            header = re.match(r"^\[(\[?)\s*([^\]]+?)\s*\]\]?$", stripped)
            if header:
                current = header.group(2).replace('"', "").replace(" ", "")
                if current == table and header_line is None:
                    header_line = number
                if current == f"{table}.{key}":
                    seen += 1
                    if index is None or seen == index:
                        header_line = number
                continue
            if current == f"{table}.{key}" and (index is None or seen == index) and field and \
                    re.match(rf'^"?{re.escape(field)}"?\s*=', stripped):
                return number
            if current == table and re.match(rf'^"?{re.escape(key)}"?\s*[=.]', stripped):
                return number
        return header_line

    def where(self, path: str) -> str:
        for prefix in (path, path.split("[")[0], path.split(".")[0]):
            if prefix in self.overridden:
                return f"{self.source} {self.overridden[prefix]}"
        match = re.match(r"^(\w+)(?:\.([\w\-]+))?(?:\[(\d+)\])?(?:\.(\w+))?", path)
        first, key, index, field = match.groups() if match else (path, None, None, None)
        if first in TABLES:
            number = self.line_of(first, key or "\0", None if index is None else int(index), field)
        else:
            number = self.line_of("", first)
        return f"{self.source} line {number}" if number else self.source


def fail(lines: Lines, path: str, message: str):
    raise SpecError(f"{lines.where(path)}: {path}: {message}")


# --------------------------------------------------------------------------- values of RunConfig fields
def kind_of(name: str) -> str:
    """The TOML kind a RunConfig field takes, read from its annotation: sizes, str, float, int, bool
    (``X | None`` means the field may also be left out, which is how TOML says None)."""
    annotation = str(FIELDS[name].type).replace(" ", "").replace("|None", "")
    return {"tuple": "sizes", "tuple[str,...]": "layers", "str": "str", "float": "float", "int": "int",
            "bool": "bool"}.get(annotation, annotation)


def check_value(lines: Lines, path: str, name: str, value):
    """``value`` as the field ``name`` takes it, or a SpecError naming the expected type."""
    kind = kind_of(name)
    if kind == "sizes":
        if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                     for v in value):
            return tuple(value)
        fail(lines, path, f"expected a list of layer sizes such as [784, 128, 10], got {value!r}")
    if kind == "layers":
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        fail(lines, path, f"expected a list of layer strings such as [\"linear 128\", \"relu\", \"linear 10\"], got "
                          f"{value!r}")
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind not in ("sizes", "layers", "float", "int", "bool", "str"):  # a field type this loader does not know
        return value
    expected = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string"}[kind]
    fail(lines, path, f"expected {expected}, got {value!r}")


def check_field_name(lines: Lines, path: str, name: str) -> None:
    if name in SPEC_ONLY:
        fail(lines, path, "seeds are set by the spec's top-level `seeds` (and [tune] seeds), not per run")
    if name not in FIELDS:
        fail(lines, path, f"unknown key; valid keys are RunConfig fields: {', '.join(FIELDS)}")


def check_seeds(lines: Lines, path: str, value) -> tuple | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            fail(lines, path, f"expected at least 1 seed, got {value}")
        return value
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                 for s in value):
        if len(set(value)) != len(value):
            fail(lines, path, f"a seed is listed twice: {value}")
        return tuple(value)
    fail(lines, path, f"expected a number of seeds or a non-empty list of seeds ≥ 0, got {value!r}")


def fresh_seeds(count: int, taken) -> tuple:
    """The first ``count`` seeds ≥ 0 that are not in ``taken``."""
    return tuple(itertools.islice((s for s in itertools.count() if s not in set(taken)), count))


# --------------------------------------------------------------------------- overrides (--set, [quick])
def parse_value(text: str):
    """A TOML value (``3``, ``[0.01, 0.1]``, ``"relu"``, ``true``); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict, path: str, value, lines: Lines, origin: str | None = None) -> None:
    """Set ``raw[path]`` for a dotted ``path`` (``base.epochs``, ``grid.activation``, ``seeds``); a bare
    RunConfig field name means ``base.<field>`` unless the field is a grid axis."""
    parts = path.split(".")
    if len(parts) == 1 and parts[0] not in TOP_KEYS:
        if parts[0] in raw.get("grid", {}):
            raise SpecError(f"--set {path}: {path} is a grid axis here; give its values with "
                            f"--set grid.{path}=[...]")
        if parts[0] not in FIELDS:
            raise SpecError(f"--set {path}: unknown key; valid: {', '.join(k for k in TOP_KEYS if k not in TABLES)},"
                            f" a RunConfig field, or base./grid./tune.<field>")
        parts = ["base", parts[0]]
    if parts[0] not in TOP_KEYS or parts[0] == "quick" or len(parts) > 2 or (parts[0] in TABLES) != (len(parts) == 2):
        raise SpecError(f"--set {path}: unknown key; valid: a top-level key "
                        f"({', '.join(k for k in TOP_KEYS if k not in TABLES)}) or "
                        f"base.<field>, grid.<field>, tune.<field>")
    if len(parts) == 1:
        raw[parts[0]] = value
    else:
        table = raw.setdefault(parts[0], {})
        old = table.get(parts[1])
        if parts[0] == "grid" and is_bundle_axis(old) and isinstance(value, list) and \
                all(isinstance(v, str) for v in value):
            by_label = {b.get("label"): b for b in old}
            unknown = [v for v in value if v not in by_label]
            if unknown:
                raise SpecError(f"--set {path}: no {parts[1]} labelled {', '.join(map(repr, unknown))}; "
                                f"labels: {', '.join(map(str, by_label))}")
            value = [by_label[v] for v in value]
        table[parts[1]] = value
        if parts[0] == "tune":  # the override gives every arm these candidates, a bundle's own included
            for values in raw.get("grid", {}).values():
                for bundle in values if is_bundle_axis(values) else ():
                    if isinstance(bundle.get("tune"), dict):
                        bundle["tune"].pop(parts[1], None)
    lines.overridden[".".join(parts)] = origin or f"(--set {'.'.join(parts)})"


def split_assignment(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise SpecError(f"--set {text}: expected key=value, e.g. --set base.epochs=3 or --set seeds=[0,1,2]")
    key, value = text.split("=", 1)
    if not key.strip():
        raise SpecError(f"--set {text}: expected key=value with a key before the '='")
    return key.strip(), parse_value(value.strip())


def is_bundle_axis(values) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, dict) for v in values)


# --------------------------------------------------------------------------- the loader
def resolve_plugin(plugin: str, source: str) -> str:
    """A plug-in file named relative to the spec's own folder when it is there (else as given: relative to
    the current folder, or a ``module:attr``), made absolute so that every worker finds the same file."""
    spec_dir = Path(source).parent
    if plugin.endswith(".py") and not Path(plugin).is_absolute() and (spec_dir / plugin).is_file():
        return str((spec_dir / plugin).resolve())
    return str(Path(plugin).resolve()) if plugin.endswith(".py") and Path(plugin).is_file() else plugin


def load_spec(path, overrides=(), quick: bool = False, load_plugins=None) -> Spec:
    """Read, override and check the spec at ``path`` (``overrides``: ``key=value`` strings, applied after
    the ``[quick]`` table when ``quick``). Plug-ins are loaded before the arms are checked."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot read the study spec {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"cannot read the study spec {path}: it is not UTF-8 text (byte {err.start}); a spec is a "
                        f"TOML text file") from None
    return parse_spec(text, str(path), overrides, quick, load_plugins)


def parse_spec(text: str, source: str = "<spec>", overrides=(), quick: bool = False, load_plugins=None) -> Spec:
    lines = Lines(text, source)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{source}: not valid TOML: {err}") from None
    for key in raw:
        if key not in TOP_KEYS:
            fail(lines, key, f"unknown key; valid top-level keys: {', '.join(TOP_KEYS)}")
    for key in TABLES:
        if key in raw and not isinstance(raw[key], dict):
            fail(lines, key, f"expected a table [{key}], got {raw[key]!r}")
    if quick:
        if "quick" not in raw:
            raise SpecError(f"{source}: --quick needs a [quick] table in the spec (what the quick variant changes)")
        for key, value in flatten(raw["quick"]):
            number = lines.line_of("quick", key)
            apply_override(raw, key, value, lines, f"line {number} ([quick] {key})" if number else "[quick]")
    for text_ in overrides:
        apply_override(raw, *split_assignment(text_), lines)
    return build(raw, lines, load_plugins)


def flatten(table: dict, prefix: str = ""):
    """``{"base": {"epochs": 3}}`` → ``("base.epochs", 3)``; grid/tune values stay whole."""
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key in TABLES and not prefix:
            yield from flatten(value, f"{key}.")
        else:
            yield path, value


def build(raw: dict, lines: Lines, load_plugins=None) -> Spec:
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[\w][\w.\-]*", name or ""):
        fail(lines, "name", f"expected a name made of letters, digits, '-', '_' or '.' (it names the study's "
                            f"folder), got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        fail(lines, "description", f"expected a string, got {description!r}")
    plugins = raw.get("plugins", [])
    if not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        fail(lines, "plugins", f"expected a list of plug-in specs (\"path/to/file.py\" or \"module:attr\"), "
                               f"got {plugins!r}")
    plugins = [resolve_plugin(p, lines.source) for p in plugins]
    if plugins:
        if load_plugins is None:
            from experiments.plugins import load_plugins  # the plug-in loader (issue 10), imported when needed
        load_plugins(plugins)
    target = raw.get("target", DEFAULT_TARGET)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        fail(lines, "target", f"expected a validation accuracy in (0, 1], e.g. 0.97, got {target!r}")

    base = {}
    for key, value in raw.get("base", {}).items():
        check_field_name(lines, f"base.{key}", key)
        base[key] = check_value(lines, f"base.{key}", key, value)

    grid = raw.get("grid", {})
    if not grid:
        fail(lines, "grid", "the grid is empty: give at least one key with a list of values to compare, "
                            "e.g. activation = [\"relu\", \"gelu\"]")
    tune_raw = dict(raw.get("tune", {}))
    tune_seeds_raw = tune_raw.pop("seeds", None)
    tune = check_tune(lines, "tune", tune_raw)
    axes = tuple(check_axis(lines, key, values) for key, values in grid.items())

    compare = raw.get("compare")
    if compare is None:
        if len(axes) != 1:
            fail(lines, "compare", f"missing: say which grid key the report compares (one of "
                                   f"{', '.join(grid)})")
        compare = axes[0].name
    if not isinstance(compare, str) or compare not in grid:
        fail(lines, "compare", f"expected one of the grid keys ({', '.join(grid)}), got {compare!r}")
    baseline = raw.get("baseline", "")
    labels = next(a.labels for a in axes if a.name == compare)
    if "baseline" in raw and (not isinstance(baseline, str) or baseline not in labels):
        hint = f"; an override of grid.{compare} left it out: add --set baseline=LABEL" \
            if f"grid.{compare}" in lines.overridden else ""
        fail(lines, "baseline", f"expected one of the {compare} labels ({', '.join(labels)}), got {baseline!r}{hint}")

    tuned = set(tune) | {k for a in axes for t in a.tunes for k in t}
    tune_seeds = ()
    if tuned:
        count = check_seeds(lines, "tune.seeds", DEFAULT_TUNE_SEEDS if tune_seeds_raw is None else tune_seeds_raw)
        tune_seeds = fresh_seeds(count, ()) if isinstance(count, int) else count
    elif tune_seeds_raw is not None:
        fail(lines, "tune.seeds", "tuning seeds without anything to tune: add a key with candidate values")
    if "seeds" not in raw:
        fail(lines, "seeds", "missing: the number of final seeds per arm (at least 5 to separate arms) or a list")
    seeds = check_seeds(lines, "seeds", raw["seeds"])
    if isinstance(seeds, int):
        seeds = fresh_seeds(seeds, tune_seeds)
    elif set(seeds) & set(tune_seeds):
        fail(lines, "seeds", f"seeds {sorted(set(seeds) & set(tune_seeds))} are also tuning seeds; the final "
                             f"seeds must be fresh (disjoint from [tune] seeds {list(tune_seeds)})")

    spec = Spec(name=name, compare=compare, seeds=tuple(seeds), base=base, axes=axes, tune=tune,
                tune_seeds=tuple(tune_seeds), plugins=tuple(plugins), target=float(target),
                description=description, source=lines.source, baseline=baseline)
    check_configs(spec, lines)
    return spec


def check_tune(lines: Lines, path: str, table: dict) -> dict:
    if not isinstance(table, dict):
        fail(lines, path, f"expected a table of candidate lists, got {table!r}")
    out = {}
    for key, values in table.items():
        check_field_name(lines, f"{path}.{key}", key)
        if not isinstance(values, list) or not values:
            fail(lines, f"{path}.{key}", f"expected a non-empty list of candidates, got {values!r}")
        out[key] = tuple(check_value(lines, f"{path}.{key}", key, v) for v in values)
    return out


def check_axis(lines: Lines, key: str, values) -> Axis:
    path = f"grid.{key}"
    if not isinstance(values, list) or not values:
        fail(lines, path, f"expected a non-empty list of values, got {values!r}")
    if is_bundle_axis(values):
        fields, labels, tunes = [], [], []
        for i, bundle in enumerate(values):
            bundle = dict(bundle)
            label = bundle.pop("label", None)
            tune = check_tune(lines, f"{path}[{i}].tune", bundle.pop("tune", {}))
            if not isinstance(label, str) or not label:
                fail(lines, f"{path}[{i}]", "a table in a grid list needs a label = \"...\" naming the arm")
            checked = {}
            for name, value in bundle.items():
                check_field_name(lines, f"{path}[{i}].{name}", name)
                checked[name] = check_value(lines, f"{path}[{i}].{name}", name, value)
            fields.append(checked)
            labels.append(label)
            tunes.append(tune)
    else:
        if any(isinstance(v, dict) for v in values):
            fail(lines, path, "mixes tables and plain values; give either values of one field or labelled tables")
        check_field_name(lines, path, key)
        fields = [{key: check_value(lines, path, key, v)} for v in values]
        labels = [value_label(key, f[key]) for f in fields]
        tunes = [{} for _ in values]
    if len(set(labels)) != len(labels):
        fail(lines, path, f"two values have the same label: {labels}")
    return Axis(key, tuple(fields), tuple(labels), tuple(tunes))


def value_label(key: str, value) -> str:
    """How a grid value reads in the report: layer sizes as ``2 hidden (784-128-128-10)``, others as is."""
    if key == "layer_sizes":
        return depth_label(value)
    if key == "layers":
        return ", ".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def depth_label(layer_sizes) -> str:
    """``8 hidden (784-64×8-10)``: the number of hidden layers and the widths, repeats folded."""
    parts, i = [], 0
    while i < len(layer_sizes):
        j = i
        while j + 1 < len(layer_sizes) and layer_sizes[j + 1] == layer_sizes[i]:
            j += 1
        count = j - i + 1
        parts += [f"{layer_sizes[i]}×{count}"] if count > 2 else [str(layer_sizes[i])] * count
        i = j + 1
    return f"{len(layer_sizes) - 2} hidden ({'-'.join(parts)})"


def check_configs(spec: Spec, lines: Lines) -> None:
    """Build every arm's config with its first tuning candidate (RunConfig checks every value); blame the
    key whose removal makes a failing config valid."""
    from experiments.plan import make_arms

    for arm in make_arms(spec):
        for candidate in arm.candidates or ({},):
            values = {**arm.fields, **candidate}
            try:
                RunConfig(**values)
            except (ValueError, TypeError) as err:
                message = str(err).splitlines()[0]
                fail(lines, blame(values, arm, candidate, message), message)


def blame(values: dict, arm, candidate: dict, error: str) -> str:
    """The spec path of the key to blame for ``error``: the first (grid, then tune, then base) without which
    the config is valid, else the first without which the error changes (an unknown optimizer hides behind
    "Adam takes no momentum" once removed)."""
    order = [(arm.paths[k], k) for k in arm.paths if k not in candidate] + \
            [(f"tune.{k}", k) for k in candidate]
    order.sort(key=lambda pk: 0 if pk[0].startswith("grid") else 1 if pk[0].startswith("tune") else 2)
    changed = None
    for path, key in order:
        try:
            RunConfig(**{k: v for k, v in values.items() if k != key})
            return path
        except (ValueError, TypeError) as err:
            if changed is None and str(err).splitlines()[0] != error:
                changed = path
    return changed or (order[0][0] if order else "base")


EXAMPLE = '''\
name = "relu-vs-gelu"
description = "Does GELU beat ReLU on a small MLP with Adam?"
compare = "activation"                 # the grid key the report compares; other grid keys form groups
seeds = 5                              # final seeds (fresh: never a tuning seed), or a list [10, 11, ...]
target = 0.97                          # time to result: epochs/seconds to this validation accuracy
# baseline = "relu"                    # optional: the report states each group's best arm against this one
# plugins = ["examples/mish.py"]       # plug-in activations/losses, loaded before anything is checked

[base]                                 # any RunConfig field (the options of `train`), shared by all runs
optimizer = "Adam"
epochs = 10
schedule = "CosineAnnealingLR"

[grid]                                 # the cross product of the lists gives the arms
activation = ["relu", "gelu", "tanh"]
layer_sizes = [[784, 256, 256, 10], [784, 64, 64, 64, 64, 10]]   # a grid key overrides [base]

[tune]                                 # optional: each arm's value chosen on validation
lr = [3e-4, 1e-3, 3e-3]
seeds = 2                              # tuning seeds: chosen by their MEAN validation accuracy

[quick]                                # optional: what --quick changes (dotted keys, as --set)
seeds = 3
"base.epochs" = 2
"base.train_subset" = 10000
'''
