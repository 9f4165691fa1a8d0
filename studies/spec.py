"""Study files: which configuration, which knobs, which metrics, where the results go.

A study is a small TOML file; every parameter is named by its dotted path into the configuration
that drives both behaviour and cost (``device.*`` = :class:`~stoxbar.devices.STODevice`,
``periphery.*`` = :class:`~stoxbar.peripherals.PeripheryConfig` and its blocks, ``agent.*`` =
:class:`~stoxbar.pong.ArchConfig` for untrained agents; ``agent.ablate`` = an ablation of the
trained agent's plasticity, :mod:`stoxbar.pong.ablate`, e.g. the built-in ``plasticity_ablation``;
``agent.backend`` = ``"chip"`` (default: the games on the simulated chips) or ``"float"`` (the same
agent in float32, as ``stoxbar play --digital``: score columns only, no chip metrics))::

    name = "converter_resolution"
    description = "ADC bits x DAC bits vs Pong score and array energy per game"
    seeds = [0, 1]                     # one trial per point and seed
    output = "runs/studies/converter_resolution"

    [base]
    checkpoint = "shipped"             # "shipped" | "random" (untrained, arch from agent.*) | a path
                                       # (relative to the study file)
    device = "sto_2024"                # device preset of the chip
    set = { "periphery.adc.share" = 8 }   # applied to every point

    [[grid]]                           # full factorial; several [[grid]] tables are unioned
    "periphery.adc.bits" = [4, 6, 8]
    "periphery.dac.bits" = [4, 6, 8]

    [random]                           # optional: n points drawn with the given seed
    n = 8
    seed = 0
    "device.read_noise_std" = { uniform = [0.0, 0.05] }   # uniform | loguniform | choice | randint

    [metrics]
    games = 20                         # Pong games per trial (0: none), played together over the chips
    chips = 0                          # chip instances per trial (0: the largest divisor of games <= 5)
    max_steps = 27000                  # agent steps per game at most
    greedy = true
    sticky = 0.25                      # sticky-action probability (Machado et al. 2018; ALE v5 default)
    mvm_error_samples = 32             # recorded layer inputs for the MVM error (0: none)
    wires = false                      # true: each point's wires solved in full (ir_drop_rel_error, held-bias drop)

    [plots]
    metrics = ["score_mean", "energy_array_j_per_game"]
    pareto = ["energy_array_j_per_game", "score_mean"]    # x (minimised), y (maximised)
    breakdown = true                   # stacked bars: share of each component per point

    [paired]                           # optional: each point's games against its reference point's
    reference = { "agent.ablate" = "none" }   # the same point with these values, same study seed
                                              # and game seeds -> paired.csv (studies.paired)

**Any task.** Instead of the Pong agent (the built-in task), a study may name a Python entry point
that builds its own model, data and metric::

    name = "digits_adc"
    task = "tasks.py:digits_mlp"              # FILE.py:NAME (relative to the study file)
                                              # or package.module:NAME
    seeds = [0]
    [base]
    device = "sto_2024"
    set = { "periphery.tile_rows" = 64 }
    [[grid]]
    "periphery.adc.bits" = [4, 8]
    [task_args]                               # optional keyword arguments for the task
    epochs = 3

The task is called once per trial as ``task(config, seed, **task_args)`` with the point's
:class:`PointConfig` (``config.device``, ``config.periphery``, ``config.rpu_config()``; ``arch`` is
None) and returns a dict of metric name -> number (e.g. accuracy and ``analyze``'s energy). The
same dotted paths (``device.*``, ``periphery.*``) set the one configuration; ``agent.*``,
``[metrics]`` and ``checkpoint`` belong to the Pong task and are refused with a task.

**Code and data.** A study file is data with one exception: ``task`` names code, which is imported
when the study is loaded and run in every trial (docs/reliability.md §7). Nothing else in it is
imported: ``[base] device`` and a checkpoint's stored preset are looked up among the *registered*
presets only (``module:factory`` is refused), and ``load_study(..., import_task=False)``
(``stoxbar sweep --dry-run``) checks that the task's file exists without importing it. Paths in the
file (``task``, ``checkpoint``) are relative to the study file; ``output`` (default
``runs/studies/<name>``) is relative to the working directory. ``name`` is a plain name (no ``.``,
``..``, path separators or control characters).

Everything is validated when the file is loaded, before anything runs: unknown keys and parameter
paths, values of the wrong type, empty grids, distributions over non-finite ranges, unknown plot
metrics (and plot metrics the trials would never measure, e.g. a score with games = 0), a base
checkpoint whose weights do not fit its architecture, the study's size (at most
``MAX_TRIALS`` trials unless the caller raises ``max_trials``, ``stoxbar sweep --max-trials``), and
every point's full configuration (so a value out of its field's range, or an ADC sharing that
does not divide a tile, is named with its point).

May import: stoxbar.core.validation, stoxbar.core.entry_points, stoxbar.core.fsio, stoxbar.analysis,
stoxbar.crossbar, stoxbar.devices, stoxbar.peripherals, stoxbar.pong, stoxbar.studies.units.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from stoxbar.core.fsio import file_sha256
from stoxbar.core.validation import ConfigError

ROOTS = ("device", "periphery", "agent")
AGENT_KEYS = ("arch", "hidden", "bottleneck", "ablate", "backend")  # architecture knobs of an untrained (random)
# agent; agent.ablate names an ablation of the trained agent (stoxbar.pong.ablate), applied before play;
# agent.backend where the agent plays (BACKENDS)
AGENT_PLAY_KEYS = ("agent.ablate", "agent.backend")  # allowed with a trained checkpoint too
BACKENDS = ("chip", "float")
DISTRIBUTIONS = ("uniform", "loguniform", "choice", "randint")
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
MAX_TRIALS = 10_000  # a larger study needs an explicit max_trials (a typo in a grid can ask for 10^6)
MAX_STUDY_BYTES = 4 * 2**20  # assumption: a study file is a few kB; 4 MiB is far beyond a real one


class StudyError(ConfigError):
    """A study file is invalid; the message names the offending entry."""


@dataclass(frozen=True)
class Metrics:
    """What each trial measures (see the module docstring)."""

    games: int = 20
    max_steps: int = 27000
    greedy: bool = True
    mvm_error_samples: int = 32
    sticky: float = 0.25  # sticky-action probability of evaluation games (stoxbar.pong.env.EVAL_STICKY)
    chips: int = 0  # chip instances the games are spread over, played together (0: pong.chips.default_chips)
    wires: bool = False  # also solve the point's tiles with full wire parasitics (studies.metrics.wire_metrics)


@dataclass(frozen=True)
class PointConfig:
    """The full configuration of one point: chip device, periphery, agent architecture (None for a task)."""

    device: Any
    periphery: Any
    arch: Any
    ablate: str = "none"  # ablation of the trained agent (``agent.ablate``; stoxbar.pong.ablate)
    backend: str = "chip"  # where the games run (``agent.backend``, BACKENDS): the chips or float32

    @property
    def on_chip(self) -> bool:
        """True if the games run on the chips (``backend`` "chip"), False in float32 (no chip metrics)."""
        return self.backend == "chip"

    def rpu_config(self, **kwargs: Any) -> Any:
        """An ``STORPUConfig`` of this point's device and periphery (``kwargs``: further fields)."""
        from stoxbar.crossbar import STORPUConfig

        return STORPUConfig(device=self.device, periphery=self.periphery, **kwargs)


@dataclass(frozen=True)
class Trial:
    """One point x seed: the unit of work, of resume and of a table row."""

    trial_id: str
    point_id: str
    group: str
    params: Dict[str, Any]
    seed: int

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Study:
    """A validated study (build with :func:`load_study`)."""

    name: str
    description: str
    source: str  # the study file's text, kept for the report
    output: Path
    seeds: Tuple[int, ...]
    checkpoint: str  # "random" or an absolute path
    checkpoint_sha256: str  # of the checkpoint file ("" for random agents): a study never mixes two
    device_preset: str
    base: Dict[str, Any]
    points: Tuple[Tuple[str, Dict[str, Any]], ...]  # (group, params); a point may sit in several groups
    metrics: Metrics
    plot_metrics: Tuple[str, ...] = ()
    pareto: Tuple[str, ...] = ()
    breakdown: bool = False
    task: str = ""  # "" = the built-in Pong task, else a resolved entry point FILE.py:NAME / module:NAME
    task_args: Tuple[Tuple[str, Any], ...] = ()
    paired: Tuple[Tuple[str, Any], ...] = ()  # [paired] reference: (varied parameter, reference value)

    @property
    def varied(self) -> Tuple[str, ...]:
        """Parameter paths varied by any point, in file order."""
        return tuple(dict.fromkeys(k for _, p in self.points for k in p))

    def trials(self) -> List[Trial]:
        """Every distinct point x seed, in file order (a point listed by two grids runs once)."""
        out, seen = [], set()
        for group, params in self.points:
            pid = point_id(params)
            if pid in seen:
                continue
            seen.add(pid)
            out.extend(Trial(f"{pid}-s{seed}", pid, group, params, seed) for seed in self.seeds)
        return out

    def identity(self) -> Dict[str, Any]:
        """What must not change when a study is resumed into the same directory."""
        ident = {"name": self.name, "random_agent": self.checkpoint == "random",
                 "checkpoint_sha256": self.checkpoint_sha256, "device": self.device_preset,
                 "base": self.base, "metrics": dataclasses.asdict(self.metrics)}
        if self.task:
            ident.update(task=self.task, task_args=dict(self.task_args), task_sha256=task_source_sha256(self.task))
        return ident


def task_source_sha256(task: str) -> str:
    """sha256 of the source file of a task entry point ``FILE.py:NAME`` / ``module:NAME``: an edited task
    is another study (its old results must not mix with new ones on resume)."""
    import importlib.util

    target = task.partition(":")[0]
    path = Path(target)
    if not path.is_file():
        found = importlib.util.find_spec(target)
        if found is None or not found.origin or not Path(found.origin).is_file():
            raise StudyError(f"task = {task!r}: cannot find the source file of {target!r}")
        path = Path(found.origin)
    return file_sha256(path)


def point_id(params: Dict[str, Any]) -> str:
    """Stable short id of a parameter assignment."""
    text = json.dumps(params, sort_keys=True, default=list)
    return "p" + hashlib.sha1(text.encode()).hexdigest()[:10]


# -- configuration paths -------------------------------------------------------------------------
def _coerce(path: str, current: Any, value: Any) -> Any:
    """``value`` converted to the type of the field's ``current`` value, or StudyError."""
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(current, str):
        ok = isinstance(value, str)
    elif isinstance(current, tuple):
        ok = isinstance(value, (list, tuple))
        if ok:
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    else:
        ok = False
    if not ok:
        raise StudyError(f"{path} = {value!r}: expected a {type(current).__name__} (like {current!r})")
    return value


def set_path(obj: Any, path: str, parts: List[str], value: Any) -> Any:
    """Copy of dataclass ``obj`` with the field at ``parts`` replaced (validated by the dataclass)."""
    names = [f.name for f in dataclasses.fields(obj)]
    if parts[0] not in names:
        raise StudyError(f"{path}: unknown parameter {parts[0]!r} in {type(obj).__name__}; known: {', '.join(names)}")
    current = getattr(obj, parts[0])
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise StudyError(f"{path}: {parts[0]!r} is a value, not a block with fields")
        new = set_path(current, path, parts[1:], value)
    elif dataclasses.is_dataclass(current):
        raise StudyError(f"{path}: {parts[0]!r} is a block; name one of its fields ({path}.<field>)")
    else:
        new = _coerce(path, current, value)
    return dataclasses.replace(obj, **{parts[0]: new})


def check_path(path: Any) -> List[str]:
    """Split a dotted parameter path; its root must be one of ROOTS."""
    if not isinstance(path, str) or not path:
        raise StudyError(f"parameter path {path!r}: must be a dotted name such as 'periphery.adc.bits'")
    parts = path.split(".")
    if parts[0] not in ROOTS or len(parts) < 2:
        raise StudyError(f"parameter path {path!r}: must start with one of {', '.join(r + '.' for r in ROOTS)}")
    if parts[0] == "agent" and (len(parts) != 2 or parts[1] not in AGENT_KEYS):
        raise StudyError(f"parameter path {path!r}: agent parameters are {', '.join('agent.' + k for k in AGENT_KEYS)}")
    return parts


def build_point(checkpoint_arch: Any, device_preset: str, base: Dict[str, Any], params: Dict[str, Any]) -> PointConfig:
    """Apply ``base`` then ``params`` (dotted paths) to the default device, periphery and arch."""
    from stoxbar.devices import presets
    from stoxbar.peripherals import PeripheryConfig

    # a study's device is data: a registered preset or a device file, never a module to import (docs/reliability.md §7)
    cfg = {"device": presets.get_registered(device_preset, "device"), "periphery": PeripheryConfig(),
           "agent": checkpoint_arch}
    if checkpoint_arch is None and any(k.startswith("agent.") for k in {**base, **params}):
        raise StudyError("agent.* parameters belong to the Pong task")
    ablate, backend = "none", "chip"
    for path, value in {**base, **params}.items():
        parts = check_path(path)
        if path == "agent.ablate":
            from stoxbar.pong.ablate import check_ablation  # the Pong task's; spec stays importable without it

            ablate = check_ablation(value, path)
            continue
        if path == "agent.backend":
            if value not in BACKENDS:
                raise StudyError(f"{path} = {value!r}: unknown backend; allowed: {', '.join(BACKENDS)}")
            backend = value
            continue
        cfg[parts[0]] = set_path(cfg[parts[0]], path, parts[1:], value)
    return PointConfig(cfg["device"], cfg["periphery"], cfg["agent"], ablate, backend)


# -- loading -------------------------------------------------------------------------------------
def _table(doc: Dict[str, Any], key: str, where: str) -> Dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise StudyError(f"{where}[{key}]: must be a table")
    return value


def _no_unknown(table: Dict[str, Any], allowed: Tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")


def _grid_points(grid: Any, where: str) -> List[Dict[str, Any]]:
    if not isinstance(grid, dict) or not grid:
        raise StudyError(f"{where}: empty grid (give at least one parameter with a list of values)")
    for path, values in grid.items():
        check_path(path)
        if not isinstance(values, list) or not values:
            raise StudyError(f"{where} {path!r} = {values!r}: must be a non-empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _grid_size(grid: Any) -> int:
    """Points a [[grid]] table asks for (0 if malformed: :func:`_grid_points` names the problem)."""
    if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) for v in grid.values()):
        return 0
    return math.prod(len(v) for v in grid.values())


def _random_points(spec: Dict[str, Any], where: str) -> List[Dict[str, Any]]:
    n, seed = spec.get("n"), spec.get("seed", 0)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise StudyError(f"{where}.n = {n!r}: must be an integer >= 1")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise StudyError(f"{where}.seed = {seed!r}: must be an integer >= 0")
    dists = {k: v for k, v in spec.items() if k not in ("n", "seed")}
    if not dists:
        raise StudyError(f"{where}: no parameters to draw")
    rng = np.random.default_rng(seed)
    columns: Dict[str, List[Any]] = {}
    for path, dist in dists.items():
        check_path(path)
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise StudyError(f"{where} {path!r} = {dist!r}: must be one of "
                             + ", ".join(f"{{ {d} = [...] }}" for d in DISTRIBUTIONS))
        kind, arg = next(iter(dist.items()))
        if not isinstance(arg, list) or not arg or (kind != "choice" and len(arg) != 2):
            raise StudyError(f"{where} {path!r}.{kind} = {arg!r}: expected [low, high]" if kind != "choice"
                             else f"{where} {path!r}.choice = {arg!r}: expected a non-empty list")
        if kind == "choice":
            columns[path] = [arg[i] for i in rng.integers(0, len(arg), n)]
            continue
        lo, hi = arg
        if (not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in arg)
                or not lo < hi):
            raise StudyError(f"{where} {path!r}.{kind} = {arg!r}: need finite numbers with low < high")
        if kind == "uniform":
            columns[path] = [float(v) for v in rng.uniform(lo, hi, n)]
        elif kind == "loguniform":
            if lo <= 0:
                raise StudyError(f"{where} {path!r}.loguniform = {arg!r}: low must be > 0")
            columns[path] = [float(v) for v in np.exp(rng.uniform(math.log(lo), math.log(hi), n))]
        else:
            columns[path] = [int(v) for v in rng.integers(int(lo), int(hi) + 1, n)]
    return [{k: columns[k][i] for k in columns} for i in range(n)]


def resolve_study_path(name_or_path: str) -> Path:
    """A study file path, or the name of a built-in study (``studies/builtin/NAME.toml``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.toml"
    if builtin.exists():
        return builtin
    known = sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))
    raise StudyError(f"study {name_or_path!r}: no such file, and no built-in study of that name (built-in: {known})")


def checkpoint_arch(checkpoint: str, check_weights: bool = False) -> Any:
    """The architecture stored in a checkpoint (CheckpointError if unusable).

    ``check_weights``: also build the agent, so weights that do not fit the architecture fail here
    (at load) rather than in every trial.
    """
    from stoxbar.pong.agent import ArchConfig
    from stoxbar.pong.checkpoint import build_agent, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if check_weights:
        return build_agent(ckpt, checkpoint).arch
    return ArchConfig.from_dict(dict(ckpt["arch"]))


def check_plot_metric(name: Any, where: str) -> str:
    """``name`` if it is a metric a trial can report (see studies/metrics.py), else StudyError."""
    from stoxbar.studies.units import UNITS, unit_of

    if not isinstance(name, str) or unit_of(name)[1] in ("", "parameter"):
        raise StudyError(f"{where}: unknown metric {name!r}; metrics are {', '.join(UNITS)}, "
                         "energy_<boundary>_j_per_<game|step>, energy_system.<component>_j_per_game, "
                         "gpu_ratio_<boundary>")
    return name


def check_task_metric(name: Any, where: str) -> str:
    """``name`` if it can name a metric of a task (a non-empty string), else StudyError."""
    if not isinstance(name, str) or not name:
        raise StudyError(f"{where}: metric {name!r} must be the name of a metric the task returns")
    return name


STATIC_METRICS = ("synapses", "tiles", "area_m2", "area_adc_share", "mvm_latency_s", "trial_wall_s")


def check_measured(name: str, metrics: Metrics, where: str) -> None:
    """StudyError if the trials of ``metrics`` never measure ``name`` (it would silently not be plotted)."""
    if name in STATIC_METRICS:
        return
    if name.startswith("mvm_rel_error") or name == "mvm_samples":
        if metrics.mvm_error_samples < 1:
            raise StudyError(f"{where}: {name!r} needs [metrics] mvm_error_samples >= 1 (it is 0: no MVM error "
                             "is measured)")
    elif metrics.games < 1:
        raise StudyError(f"{where}: {name!r} needs [metrics] games >= 1 (it is 0: no game is played)")


def check_name(name: Any, where: str) -> str:
    """A study name usable as one directory name: not empty, not ``.``/``..``, no separator or control character."""
    if (not isinstance(name, str) or not name or name in (".", "..") or len(name) > 200
            or any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise StudyError(f"{where}: name = {name!r} must be a plain name of 1-200 characters: not '.' or '..', "
                         "without '/', '\\' or control characters")
    return name


def check_output(out: Any, where: str) -> str:
    """An output directory path without NUL or other control characters."""
    if not isinstance(out, str) or not out or any(ord(c) < 32 or ord(c) == 127 for c in out):
        raise StudyError(f"{where}: output = {out!r} must be a path without control characters")
    return out


def load_study(path_or_name: str, output: Optional[str] = None, max_trials: int = MAX_TRIALS,
               import_task: bool = True, checkpoint: Optional[str] = None) -> Study:
    """Parse and fully validate a study file (see module docstring); ``output`` overrides its own.

    ``checkpoint``: the agent to play instead of the file's ``[base] checkpoint`` (``stoxbar sweep
    --checkpoint``: e.g. a built-in study on one's own trained agent); a path relative to the working
    directory, or "shipped" / "random".

    ``max_trials``: refuse a study of more trials (points x seeds) than this, before any point is built.
    ``import_task=False``: check that a task's file exists but do not import it (``--dry-run``: run
    no user code); the points are then validated against the registered presets only.
    """
    from stoxbar.pong.agent import ArchConfig
    from stoxbar.pong.checkpoint import SHIPPED_CHECKPOINT

    path = resolve_study_path(path_or_name)
    where = f"study {path}"
    size = path.stat().st_size
    if size > MAX_STUDY_BYTES:
        raise StudyError(f"{where}: {size} bytes is more than the limit of {MAX_STUDY_BYTES} bytes for a study file")
    try:
        text = path.read_bytes().decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise StudyError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{where}: not valid TOML ({exc})") from None
    except RecursionError:
        raise StudyError(f"{where}: not valid TOML (nested too deeply)") from None
    base_dir = path.resolve().parent
    _no_unknown(doc, ("name", "description", "seeds", "output", "base", "grid", "random", "metrics", "plots", "task",
                      "task_args", "paired"), where)
    task, task_args = _task(doc, where, base_dir, import_task)
    name = check_name(doc.get("name", path.stem), where)
    seeds = doc.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise StudyError(f"{where}: seeds = {seeds!r} must be a non-empty list of distinct integers >= 0")
    out = check_output(output or doc.get("output") or f"runs/studies/{name}", where)

    base_t = _table(doc, "base", where)
    _no_unknown(base_t, ("checkpoint", "device", "set"), f"{where} [base]")
    if task and ("checkpoint" in base_t or "metrics" in doc):
        raise StudyError(f"{where}: [base] checkpoint and [metrics] belong to the Pong task; with task = "
                         f"{doc['task']!r} pass the task's options in [task_args]")
    ckpt = base_t.get("checkpoint", "shipped") if not task else "none"
    ck_where, ck_dir = f"{where} [base] checkpoint", base_dir
    if checkpoint is not None:
        if task:
            raise StudyError(f"--checkpoint {checkpoint!r}: study {path} runs task = {doc['task']!r}, which plays "
                             "no Pong agent")
        ckpt, ck_where, ck_dir = checkpoint, "--checkpoint", Path.cwd()
    if not isinstance(ckpt, str) or not ckpt:
        raise StudyError(f"{ck_where} = {ckpt!r}: 'shipped', 'random' or a path")
    if ckpt == "shipped":
        ckpt = str(SHIPPED_CHECKPOINT)
    elif ckpt not in ("random", "none"):
        if any(ord(c) < 32 for c in ckpt):
            raise StudyError(f"{ck_where} = {ckpt!r}: control characters in a path")
        ck = Path(ckpt) if Path(ckpt).is_absolute() else (ck_dir / ckpt)
        if not ck.is_file():
            raise StudyError(f"{ck_where} = {ckpt!r}: file {ck} not found" + (
                " (a path in a study file is relative to the study file)" if checkpoint is None else ""))
        ckpt = str(ck.resolve())
    arch = None if task else ArchConfig() if ckpt == "random" else checkpoint_arch(ckpt, check_weights=True)
    device_preset = base_t.get("device", "sto_2024" if task else arch.device_preset)
    if not isinstance(device_preset, str):
        raise StudyError(f"{where} [base] device = {device_preset!r}: must be a registered preset name or a "
                         "device file PATH.toml")
    if device_preset.lower().endswith(".toml"):  # a device file is data; its path is relative to the study file
        dev = Path(device_preset) if Path(device_preset).is_absolute() else (base_dir / device_preset)
        if not dev.is_file():
            raise StudyError(f"{where} [base] device = {device_preset!r}: file {dev} not found (a path in a study "
                             "file is relative to the study file)")
        device_preset = str(dev.resolve())
    base = base_t.get("set", {})
    if not isinstance(base, dict):
        raise StudyError(f"{where} [base] set: must be a table of parameter paths")

    groups: List[Tuple[str, Dict[str, Any]]] = []
    grids = doc.get("grid", [])
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list):
        raise StudyError(f"{where}: grid must be a table or an array of tables ([[grid]])")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise StudyError(f"max_trials = {max_trials!r}: allowed range is [1, inf)")
    rand_t = doc.get("random", {})
    n_rand = rand_t.get("n", 0) if isinstance(rand_t, dict) else 0
    n_points = sum(_grid_size(g) for g in grids) + (n_rand if isinstance(n_rand, int) and n_rand > 0 else 0)
    if n_points * len(seeds) > max_trials:
        raise StudyError(f"{where}: {n_points} points x {len(seeds)} seeds = {n_points * len(seeds)} trials is more "
                         f"than the limit of {max_trials}; if that is meant, allow it explicitly "
                         f"(stoxbar sweep --max-trials {n_points * len(seeds)})")
    for i, grid in enumerate(grids):
        label = f"grid{i + 1}"
        groups += [(label, p) for p in _grid_points(grid, f"{where} [[grid]] #{i + 1}")]
    if "random" in doc:
        groups += [("random", p) for p in _random_points(_table(doc, "random", where), f"{where} [random]")]
    if not groups:
        raise StudyError(f"{where}: no points (add a [[grid]] or a [random] table)")

    metrics_t = _table(doc, "metrics", where)
    allowed = tuple(f.name for f in dataclasses.fields(Metrics))
    _no_unknown(metrics_t, allowed, f"{where} [metrics]")
    metrics = Metrics()
    for key, value in metrics_t.items():
        metrics = dataclasses.replace(metrics, **{key: _coerce(f"metrics.{key}", getattr(metrics, key), value)})
    if metrics.games < 0 or metrics.max_steps < 1 or metrics.mvm_error_samples < 0:
        raise StudyError(f"{where} [metrics]: games >= 0, max_steps >= 1 and mvm_error_samples >= 0 "
                         f"(got {metrics})")
    if not 0.0 <= metrics.sticky < 1.0:
        raise StudyError(f"{where} [metrics] sticky = {metrics.sticky!r}: allowed range is [0, 1)")
    if metrics.chips < 0 or (metrics.games and metrics.chips and metrics.games % metrics.chips):
        raise StudyError(f"{where} [metrics] chips = {metrics.chips!r}: allowed: 0 (automatic) or a divisor of "
                         f"games = {metrics.games} in [1, {metrics.games}]")

    plots_t = _table(doc, "plots", where)
    _no_unknown(plots_t, ("metrics", "pareto", "breakdown"), f"{where} [plots]")
    plot_metrics = plots_t.get("metrics", [])
    if not isinstance(plot_metrics, list):
        raise StudyError(f"{where} [plots] metrics = {plot_metrics!r}: must be a list of metric names")
    # a task's metrics are known only when it runs: its plot metrics need only be names
    check_metric = check_task_metric if task else check_plot_metric
    plot_metrics = tuple(check_metric(m, f"{where} [plots] metrics") for m in plot_metrics)
    breakdown = plots_t.get("breakdown", False)
    if not isinstance(breakdown, bool):
        raise StudyError(f"{where} [plots] breakdown = {breakdown!r}: must be true or false")
    pareto = plots_t.get("pareto", [])
    if not isinstance(pareto, list) or (pareto and len(pareto) != 2):
        raise StudyError(f"{where} [plots] pareto = {pareto!r}: give [x metric (minimised), y metric (maximised)]")
    pareto = tuple(check_metric(m, f"{where} [plots] pareto") for m in pareto)
    if not task:
        for m in plot_metrics:
            check_measured(m, metrics, f"{where} [plots] metrics")
        for m in pareto:
            check_measured(m, metrics, f"{where} [plots] pareto")

    paired = _paired(doc, where, groups, bool(task) or metrics.games == 0)

    # every point's full configuration, before anything runs
    for group, params in groups:
        where_p = f"{where}: point {params}"
        if task and any(k.startswith("agent.") for k in {**base, **params}):
            raise StudyError(f"{where_p}: agent.* parameters belong to the Pong task, not to task = {doc['task']!r}")
        if not task and ckpt != "random" and any(k.startswith("agent.") and k not in AGENT_PLAY_KEYS
                                                 for k in {**base, **params}):
            raise StudyError(f"{where_p}: agent.* parameters need checkpoint = 'random' (a trained checkpoint "
                             "fixes its architecture)")
        try:
            cfg = build_point(arch, device_preset, base, params)
        except ConfigError as exc:
            raise StudyError(f"{where_p}: {exc}") from None
        if not task and cfg.arch.cell != "mstpn" and cfg.on_chip:
            raise StudyError(f"{where_p}: cell = {cfg.arch.cell!r}; only an m-STPN maps onto the STO chip (play "
                             "this agent in float: agent.backend = 'float')")
    points = groups
    sha = "" if ckpt in ("random", "none") else file_sha256(ckpt)
    return Study(name=name, description=str(doc.get("description", "")), source=text, output=Path(out),
                 seeds=tuple(seeds), checkpoint=ckpt, checkpoint_sha256=sha, device_preset=device_preset, base=dict(base),
                 points=tuple(points), metrics=metrics, plot_metrics=plot_metrics, pareto=pareto, breakdown=breakdown,
                 task=task, task_args=task_args, paired=paired)


def _paired(doc: Dict[str, Any], where: str, groups: List[Tuple[str, Dict[str, Any]]], no_games: bool
            ) -> Tuple[Tuple[str, Any], ...]:
    """The ``[paired] reference`` table, checked: varied parameters, each value one that a point has."""
    paired_t = _table(doc, "paired", where)
    _no_unknown(paired_t, ("reference",), f"{where} [paired]")
    if not paired_t:
        return ()
    if no_games:
        raise StudyError(f"{where} [paired]: paired comparisons pair the Pong games of two points; this study "
                         "plays none (a task study, or [metrics] games = 0)")
    ref = paired_t.get("reference")
    if not isinstance(ref, dict) or not ref:
        raise StudyError(f"{where} [paired] reference = {ref!r}: give a table of varied parameter -> reference "
                         'value, e.g. { "agent.ablate" = "none" }')
    varied = list(dict.fromkeys(k for _, p in groups for k in p))
    for key, value in ref.items():
        if key not in varied:
            raise StudyError(f"{where} [paired] reference: {key!r} is not a varied parameter; allowed: "
                             f"{', '.join(varied)}")
        values = list(dict.fromkeys(repr(p[key]) for _, p in groups if key in p))
        if not any(key in p and p[key] == value and type(p[key]) is type(value) for _, p in groups):
            raise StudyError(f"{where} [paired] reference {key} = {value!r}: no point has this value; allowed: "
                             f"{', '.join(values)}")
    return tuple(ref.items())


def _task(doc: Dict[str, Any], where: str, base_dir: Path, import_task: bool = True
          ) -> Tuple[str, Tuple[Tuple[str, Any], ...]]:
    """(resolved task entry point or "", task_args) of a study file; the entry point is imported now
    unless ``import_task`` is False. A FILE.py target is relative to the study file's directory."""
    from stoxbar.core.entry_points import load_entry_point

    spec = doc.get("task", "")
    args = _table(doc, "task_args", where)
    if not spec:
        if "task" in doc or args:
            raise StudyError(f"{where}: task = {spec!r}: give FILE_OR_MODULE:NAME (or leave task out for Pong)")
        return "", ()
    if not isinstance(spec, str):
        raise StudyError(f"{where}: task = {spec!r}: expected FILE_OR_MODULE:NAME")
    if spec.count(":") != 1 or not all(spec.split(":")) or any(ord(c) < 32 for c in spec):
        raise StudyError(f"{where}: task = {spec!r}: expected FILE.py:NAME or package.module:NAME")
    target, _, name = spec.partition(":")
    if target.endswith(".py") or (base_dir / target).exists():
        file = (Path(target) if Path(target).is_absolute() else base_dir / target).resolve()
        if not file.is_file():
            raise StudyError(f"{where}: task = {spec!r}: file {file} not found (a task file is relative to the "
                             "study file)")
        target = str(file)
    resolved = f"{target}:{name}"
    if import_task:
        try:
            load_entry_point(resolved, "task")
        except ConfigError as exc:
            raise StudyError(f"{where}: {exc}") from None
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError):
        raise StudyError(f"{where} [task_args]: values must be plain TOML values") from None
    return resolved, tuple(sorted(args.items()))
