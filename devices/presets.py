"""Device presets: ``sto_2024()`` (calibrated to the paper) and ``ideal()`` (for exactness checks).

Every value carries its source, ``docs/paper.md`` (Weilenmann et al., Nat. Commun. 15, 2024, as
summarised in docs/paper.md) or "assumption" with the reasoning. The same sources sit in the
``STODevice`` field metadata, so ``describe(device)`` prints them.

May import: stoxbar.core (validation, entry_points), stoxbar.devices.{base,sto,tiox,files}.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict

from stoxbar.devices import files
from stoxbar.devices.base import MemristiveDevice
from stoxbar.devices.files import as_tuple
from stoxbar.devices.tiox import TiOxTaOyDevice, zhong_2021
from stoxbar.devices.sto import PAPER_BIAS_POWER_W, PAPER_V_BIAS_MAX_V, STODevice
from stoxbar.core.validation import ConfigError

# torch device strings (a user who knows torch may type one for --device, which names the memristive device)
_TORCH_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|meta)(:\d+)?")

__all__ = ["sto_2024", "ideal", "IdealSTODevice", "PRESETS", "DEVICE_CLASSES", "get_preset", "get_registered",
           "register_preset", "device_from_fields", "resolve_device"]


def sto_2024() -> STODevice:
    """The STO memristor of Weilenmann et al. 2024, with documented assumptions where the paper's
    Methods/Supplementary values were not available."""
    return STODevice(
        name="sto_2024",
        # docs/paper.md §1: 4.3 nW per synapse at zero weight, V_bias = 0.6 V; ohmic -> 11.9 nS (derived)
        g_min_s=PAPER_BIAS_POWER_W / PAPER_V_BIAS_MAX_V**2,
        # docs/paper.md §1: non-filamentary switching in a low-conductance regime "below ~100 nS"
        g_max_s=100e-9,
        # assumption: ~88 mean steps over the 88 nS window (~6.5 bit long-term resolution)
        lt_dg_s=1e-9,
        # assumption: LTD step 1.2x the LTP step at the window centre (mild asymmetry)
        lt_up_down=1.2,
        # assumption: LTP step at g_min is e^2 = 7.4x the step at g_max (saturating LTP/LTD curves)
        lt_nonlinearity=2.0,
        # assumption: 30% relative cycle-to-cycle spread per pulse (aihwkit-style dw_min_std)
        lt_c2c_std=0.3,
        # assumption: 30% device-to-device spread of the step; docs/paper.md §1 names d2d as a weakness
        lt_d2d_std=0.3,
        # assumption: long-term (non-volatile) pulses 3 V x 10 us on ~100 nS -> 9 pJ per pulse
        lt_pulse_v=3.0,
        lt_pulse_width_s=10e-6,
        lt_pulse_conductance_s=100e-9,
        # docs/paper.md §1: dG = a E^b (a, b not available). Assumption: b = 0.5 (sub-linear) and
        # dG = 2 nS = 2.3% of the 88 nS long-term window at E = 1 pJ -> a = 2e-9 / (1e-12)**0.5.
        # Reasoning: a short-term pulse should move the weight by a few % of its range, so that
        # ~5-15 pulses fill the short-term window (a short-term increment modulates W, not a
        # rewrite), and pJ pulses are what 1-2 V, 10 us pulses on ~50 nS deliver.
        st_a=2e-9 / (1e-12) ** 0.5,
        st_b=0.5,
        # assumption: two write rails (1 V, 2 V) x two widths (10, 20 us) -> E = 0.5, 1, 2, 4 pJ,
        # dG = 1.41, 2.0, 2.83, 4.0 nS (1.6-4.5% of the window). docs/paper.md §1: "a few fixed sizes".
        st_pulse_levels=((1.0, 10e-6), (1.0, 20e-6), (2.0, 10e-6), (2.0, 20e-6)),
        # assumption: conductance under a 1-2 V write pulse ~ mid window (E = V^2 G t)
        st_pulse_conductance_s=50e-9,
        # assumption: the volatile increment saturates at 20 nS (~20% of the window, 5-14 pulses)
        st_g_max_s=20e-9,
        # assumption: shortest time constant 0.1 s (docs/paper.md §1: unknown, "~0.1-1 s")
        tau_min_s=0.1,
        # docs/paper.md §1: longest short-term time constant about 100 s
        tau_max_s=100.0,
        # assumption: 0 V (unbiased) gives the fastest decay; log(tau) linear in V_bias
        v_bias_min_v=0.0,
        # docs/paper.md §1: 0.6 V, the worst-case bias the paper holds on every synapse
        v_bias_max_v=PAPER_V_BIAS_MAX_V,
        # assumption: tau grows with bias (tau_max at 0.6 V)
        tau_increases_with_bias=True,
        # assumption: read at 0.6 V (the level held as bias, non-disturbing; peripherals DAC default)
        v_read_v=0.6,
        # ISAAC read cycle 100 ns (docs/peripherals-energy.md §1)
        t_read_s=100e-9,
        # assumption: 1% relative read noise
        read_noise_std=0.01,
    )


# ideal(): tau range far beyond any simulated time (1e9..1e12 s, >30 years): exp(-dt/tau) rounds
# to exactly 1 in float32 for dt up to ~50 s, so decay is effectively off while tau(V_bias),
# its inverse and the bias energy keep working (tau = inf is not allowed).
IDEAL_TAU_MIN_S = 1e9
IDEAL_TAU_MAX_S = 1e12


@dataclass(frozen=True)
class IdealSTODevice(STODevice):
    """An STO device whose long-term conductance is continuous (the ``ideal`` preset).

    Programming (write-verify and open-loop) and the pulsed in-situ update land every device on
    its target conductance exactly, like aihwkit's ``IdealDevice`` (a floating-point update), so
    training on it equals training a floating-point tile within float32 round-off
    (docs/aihwkit-support.md §2). ``lt_dg_s`` stays the nominal step that *counts* the pulses a
    change costs (energy, latency: comparable with ``sto_2024``); it no longer quantises the
    conductance. The STO quantisation of ``sto_2024`` (1 nS steps) is untouched.
    """

    continuous_long_term: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        # a continuous device lands on its target: long-term spread or nonlinearity would be ignored
        for name in ("lt_c2c_std", "lt_d2d_std", "lt_nonlinearity"):
            if getattr(self, name) != 0.0:
                raise ConfigError(f"{name} = {getattr(self, name)!r}: the ideal device's long-term conductance is "
                                  "continuous, so it must be 0 here; allowed: 0 (start from presets.sto_2024() "
                                  "for a device with long-term non-idealities)")


def ideal() -> STODevice:
    """``sto_2024`` without non-idealities: no noise, no d2d/c2c, linear symmetric steps, no decay,
    continuous long-term conductance (:class:`IdealSTODevice`).

    Window, pulse levels, energies and bias range stay those of ``sto_2024`` so costs are
    comparable; only the behaviour becomes exact.
    """
    base = sto_2024()
    note = "ideal preset: "
    changes = dict(
        lt_up_down=1.0,  # symmetric LTP/LTD
        lt_nonlinearity=0.0,  # linear steps (state-independent)
        lt_c2c_std=0.0,
        lt_d2d_std=0.0,
        read_noise_std=0.0,
        tau_min_s=IDEAL_TAU_MIN_S,  # decay effectively off (see IDEAL_TAU_*)
        tau_max_s=IDEAL_TAU_MAX_S,
    )
    why = {
        "lt_up_down": "symmetric LTP/LTD", "lt_nonlinearity": "linear steps", "lt_c2c_std": "no c2c noise",
        "lt_d2d_std": "no d2d variability", "read_noise_std": "no read noise",
        "tau_min_s": "decay effectively off (tau >= 1e9 s; tau = inf is not allowed)",
        "tau_max_s": "decay effectively off (tau <= 1e12 s)",
    }
    fields = {**{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init}, **changes}
    fields.update(name="ideal", notes=tuple((k, note + v) for k, v in why.items()))
    return IdealSTODevice(**fields)


PRESETS: Dict[str, Callable[[], MemristiveDevice]] = {"sto_2024": sto_2024, "ideal": ideal, "zhong_2021": zhong_2021}
# Device classes a stored device (a checkpoint's fields) may be rebuilt as, by class name. Filled by
# register_preset with the class of each registered preset's device; nothing is ever imported to find one.
DEVICE_CLASSES: Dict[str, type] = {"STODevice": STODevice, "IdealSTODevice": IdealSTODevice,
                                   "TiOxTaOyDevice": TiOxTaOyDevice}


def register_preset(name: str, factory: Callable[[], MemristiveDevice], replace_existing: bool = False) -> None:
    """Make ``factory`` (no arguments -> a :class:`MemristiveDevice`) available as preset ``name``.

    This is how a new device model plugs in: its module defines the device class and calls
    ``register_preset`` once; ``get_preset``, ``stoxbar device --preset NAME`` and study files
    then know it. Raises :class:`ConfigError` for a taken name (unless ``replace_existing``), an
    empty name, or a factory that does not return a ``MemristiveDevice``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"preset name = {name!r}: must be a non-empty string")
    if name in PRESETS and not replace_existing:
        raise ConfigError(f"preset = {name!r}: already registered; allowed: a new name (taken: {tuple(PRESETS)})")
    if not callable(factory):
        raise ConfigError(f"preset {name!r} factory = {factory!r}: must be callable with no arguments")
    device = factory()
    if not isinstance(device, MemristiveDevice):
        raise ConfigError(f"preset {name!r} factory returned {type(device).__name__}: must return a "
                          "MemristiveDevice (stoxbar.devices.base)")
    PRESETS[name] = factory
    DEVICE_CLASSES[type(device).__name__] = type(device)  # the latest registration of a class name wins


def get_registered(name: str, what: str = "preset") -> MemristiveDevice:
    """A fresh device of a registered preset or a device file; never imports anything (a stored name is data).

    Used for names read from files (checkpoints, study files, worker jobs): ``"module:factory"``
    there is refused with a :class:`ConfigError`, since importing it would run code named by a file
    (docs/reliability.md §7). The command line's ``--preset module:factory`` goes through
    :func:`get_preset` instead. Both are :func:`resolve_device`.
    """
    return resolve_device(name, trusted=False, what=what)


def resolve_device(spec: Any, trusted: bool = True, what: str = "preset") -> MemristiveDevice:
    """The one resolver of a device named by the user or a file (``--preset``/``--device``, study files,
    checkpoints' names, ``STORPUConfig(device="...")``).

    ``spec``: a registered preset name; a device file ``PATH.toml`` (data only, :mod:`stoxbar.devices.files`);
    and only when ``trusted`` (the user typed it on the command line or in Python): ``PATH.py:factory``
    (a Python file from any directory) or ``package.module:factory``. Those two run code: the factory is
    registered under ``spec`` and called. A :class:`ConfigError` says in one line what is wrong.
    """
    if isinstance(spec, MemristiveDevice):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{what} = {spec!r}: must be a preset name, a device file PATH.toml or 'module:factory'")
    if spec in PRESETS:
        return PRESETS[spec]()
    if files.is_device_file(spec):
        return load_device_file(spec)
    allowed = f"a registered preset {tuple(PRESETS)}, a device file PATH.toml"
    if _TORCH_DEVICE.fullmatch(spec):
        raise ConfigError(f"{what} = {spec!r}: that is a torch device, not a memristive device (stoxbar play takes "
                          f"the torch device of its batched chips as --torch-device); allowed values are {allowed}, "
                          "PATH.py:factory or 'module:factory'")
    if ":" not in spec:
        raise ConfigError(f"{what} = {spec!r}: allowed values are {allowed}, PATH.py:factory or 'module:factory'")
    if not trusted:
        raise ConfigError(f"{what} = {spec!r}: not {allowed}; a file never names code to import - register the "
                          "preset (register_preset) in code you run, or pass --preset module:factory on the "
                          "command line")
    factory = _load_factory(spec, what)
    try:
        register_preset(spec, factory)
    except ConfigError:
        raise
    except Exception as exc:  # user code can fail in any way: one line naming the preset and why
        raise ConfigError(f"{what} = {spec!r}: cannot load factory: it raised {type(exc).__name__}: {exc}") from None
    return PRESETS[spec]()


def load_device_file(path: Any) -> MemristiveDevice:
    """The device a TOML device file describes (:mod:`stoxbar.devices.files`); a :class:`ConfigError` names the
    file and the key, value and allowed range that do not fit. Data only: nothing is imported."""
    cls_name, based_on, given, sources = files.read_device_file(path)
    where = f"device file {path}"
    cls = DEVICE_CLASSES.get(cls_name) if isinstance(cls_name, str) else None
    if cls is None:
        raise ConfigError(f"{where}: class = {cls_name!r}; allowed: a registered device class {tuple(DEVICE_CLASSES)}")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    values: Dict[str, Any] = {}
    if based_on is not None:
        if based_on not in PRESETS:
            raise ConfigError(f"{where}: based_on = {based_on!r}; allowed: a registered preset {tuple(PRESETS)}")
        base = PRESETS[based_on]()
        if not isinstance(base, cls):
            raise ConfigError(f"{where}: based_on = {based_on!r} is a {type(base).__name__}, not a {cls_name}")
        values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init and f.name != "notes"}
    for table, keys in (("fields", given), ("sources", sources)):
        bad = sorted(set(keys) - known)
        if bad:
            raise ConfigError(f"{where}: [{table}] unknown key(s) {bad}; allowed: the fields of {cls_name} {sorted(known)}")
    values.update(given)
    if sources and "notes" in known:
        values["notes"] = tuple(sorted(sources.items()))
    return device_from_fields(cls_name, values, where)


def _load_factory(spec: str, what: str) -> Callable[[], MemristiveDevice]:
    """The factory ``PATH.py:factory`` or ``module:factory`` names (imports it: trusted input only)."""
    from stoxbar.core.entry_points import load_entry_point

    try:
        return load_entry_point(spec, what)
    except ConfigError as exc:
        raise ConfigError(f"cannot load factory: {exc}; allowed: a registered preset {tuple(PRESETS)}, PATH.toml, "
                          "PATH.py:factory or 'module:factory'") from None


def device_from_fields(class_name: str, fields: Dict[str, Any], what: str = "device") -> MemristiveDevice:
    """Rebuild a stored device: ``class_name`` must be a registered device class (:data:`DEVICE_CLASSES`);
    ``fields`` are its dataclass fields. Never imports; a ConfigError names what does not fit."""
    cls = DEVICE_CLASSES.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        raise ConfigError(f"{what} class = {class_name!r}: not a registered device class {tuple(DEVICE_CLASSES)}; "
                          "register its preset (register_preset) before loading")
    if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
        raise ConfigError(f"{what} fields: expected a dict of field name -> value, got {type(fields).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"{what} fields {unknown}: not fields of {class_name}")
    values = {k: as_tuple(v) if isinstance(v, list) else v for k, v in fields.items()}  # JSON-style lists
    try:
        return cls(**values)
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, AttributeError) as exc:
        # stored values of the wrong kind fail in the class's own checks in many ways (ConfigError is a ValueError)
        raise ConfigError(f"{what}: the stored fields do not make a valid {class_name} ({type(exc).__name__}: "
                          f"{exc})") from None


def get_preset(name: str, what: str = "preset") -> MemristiveDevice:
    """A fresh device by a name the user typed (:func:`resolve_device` with ``trusted=True``).

    ``name`` is a registered preset, a device file ``PATH.toml``, ``PATH.py:factory`` or
    ``"package.module:factory"`` (imported, registered under that string once and called), so a device
    defined outside stoxbar works wherever the *command line* takes a preset. This runs code: call it
    only with a name the user typed, never with one read from a file (those go through
    :func:`get_registered`; docs/reliability.md §7). ``what`` names the option in errors (``--device``).
    """
    return resolve_device(name, trusted=True, what=what)
