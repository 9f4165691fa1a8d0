"""The one cost model: events of a tile plus the configuration -> energy (J), latency (s), area (m^2).

:func:`cost` is the only function in stoxbar that turns what a crossbar did (an
:class:`~stoxbar.crossbar.events.Events` record of one operation on one tile) into joules and
seconds; :func:`area` the only one that turns a layout into square metres. The ledger books what
:func:`cost` returns (:func:`book`); ``stoxbar energy``, the studies, a task's energy boundaries,
``PeripheryConfig`` summaries (:func:`describe`) and ``analyze`` all go through it. A full-scale
figure (an upper bound per MVM) is the cost of a synthetic full-scale event
(:func:`full_scale_read`), not a second estimate.

Components (ledger ``component`` field), per tile:

=====================  ==================================================================================
``dac``                input conversions: ``dac.energy_per_input_j`` per row, vector and read round
``row_driver``         charging each driven row line, C_line V_read^2 per pass (a row line spans the
                       full physical tile width, active columns or not)
``cell_read``          the array itself: ``p(V_read) t_pass drive_g_s`` with ``p`` the device's read power
                       per siemens (``device.read_power_w``; ohmic: V^2), ``drive_g_s`` the sum over
                       cells, vectors and rounds of G times the input's drive (input dependent, exact);
                       with line parasitics the delivered drive less the wires' part
``wire_read``          line parasitics (``periphery.parasitics``, amplitude reads): the I^2 R of the row
                       and column wires, ``V_read^2 t_pass wire_g_s`` from the read model's own solve
``adc``                conversions per vector, round and pass (``periphery.adc_columns``: one per
                       physical column with digital subtraction, one per output with analog)
``sense``              TIA/integrator (over the DAC's read window) + sample-and-hold per conversion
``digital_subtract``   digital subtraction of the pair (or reference) columns, one add per output
                       and vector (``subtraction = "digital"`` only)
``digital_accum``      partial-sum accumulation of a row-tile after the first into the running sum,
                       one add per output and vector, + bit-serial shift-adds (passes - 1 per
                       converted column and vector)
``st_pulse``           short-term pulses: the device energy of each level, times its count
``st_write_driver``    each short-term pulse's driver: the selected row line (every physical column of the
                       tile) charged to V, the selected column line swung by the write scheme's level
                       (``periphery.write_scheme``), + a fixed overhead; its time is the write phase
``half_select``        the half-selected cells of each pulse at V/2 (or V/3), by the device's pulse law
``bias``               decay-control bias held on the synapses (the device's exact integral)
``bias_driver``        bias supply loss (switched: efficiency; linear / per-cell: the rail's drop,
                       exact per cell) + quiescent power of every driven line (``bias_addressing``:
                       rows, physical columns, both, or one rail per tile), over the held duty
``bias_refresh``       ``per_cell`` addressing: refresh of every cell's held control voltage
``leakage``            static power of the tile's blocks over every decay interval, per chip (gated
                       blocks at ``power_gating.residual``; peripherals/static.py)
``power_gating_wake``  one wake-up of the gated blocks per chip and decay interval
``lt_program``         long-term (LTP/LTD) programming pulses + their write driver (full row line, column swing)
``lt_half_select``     the half-selected cells of the programmed lines, at the write scheme's voltage
=====================  ==================================================================================

Latency of a read (docs/peripherals-energy.md §5, docs/substrate.md §3): per pass, read = line
rise + DAC read window (the array settles within it), readout = the tile's ADCs convert its
active columns in turn (``adc.share`` columns per ADC at most). The sample-and-hold decouples
the two, so the K = vectors x rounds x passes passes pipeline:
``read + (K - 1) max(read, readout) + readout``. Tiles of a layer run in parallel: a layer's
latency is the largest of its tiles' (:meth:`~stoxbar.crossbar.ledger.EnergyLedger.latency_s`).
Short-term pulses are written one at a time: each takes its width plus the write driver's set-up
time, booked on ``st_write_driver`` (the write phase of the step; a conservative schedule); the
decay interval carries no read latency (its ``dt_s`` is booked as the bias entry's time).

May import: stoxbar.core.validation, stoxbar.devices, stoxbar.peripherals, stoxbar.crossbar.events (not torch tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Sequence, Tuple, Union

from stoxbar.crossbar.events import Events
from stoxbar.devices.base import MemristiveDevice
from stoxbar.peripherals.config import PeripheryConfig
from stoxbar.peripherals.drivers import driven_lines
from stoxbar.core.validation import ConfigError, check_int

if TYPE_CHECKING:
    from stoxbar.crossbar.ledger import EnergyLedger

LEDGER_EVENT = {"read": "mvm", "short_term": "short_term_update", "decay": "decay", "program": "program"}
_TIME_COMPONENT = {"read": "dac", "decay": "bias"}


@dataclass
class Cost:
    """Cost of one operation on one tile: ``parts`` component -> (count, energy J), latency (s).

    ``event`` is the ledger event name, ``time_component`` the part that carries the time; ``times``
    gives other parts their own busy time (s), e.g. the power-gating wake-up before a step.
    """

    event: str
    parts: Dict[str, Tuple[float, float]]
    latency_s: float = 0.0
    time_component: str = ""
    times: Dict[str, float] = field(default_factory=dict)

    @property
    def energy_j(self) -> float:
        """Total energy (J)."""
        return math.fsum(e for _, e in self.parts.values())

    def by_component(self) -> Dict[str, float]:
        """Energy (J) per component."""
        return {k: e for k, (_, e) in self.parts.items()}


def cost(events: Events, device: MemristiveDevice, periphery: PeripheryConfig) -> Cost:
    """Energy by component and latency of ``events`` on a tile of ``device`` cells and ``periphery``."""
    op = events.op
    if op == "read":
        return _read(events, periphery, device)
    if op == "short_term":
        return _short_term(events, device, periphery)
    if op == "decay":
        return _decay(events, periphery)
    if op == "program":
        e_drv, e_half = lt_pulse_unit(periphery, device)
        n = events.program_pulses
        return Cost("program", {"lt_program": (n, events.program_device_j + n * e_drv),
                                "lt_half_select": (n, n * e_half)})
    raise ConfigError(f"events.op = {op!r}: allowed values are {tuple(LEDGER_EVENT)}")


def read_latency_s(periphery: PeripheryConfig, cols: int, passes: int, reads: int = 1) -> float:
    """Latency (s) of ``reads`` read operations taking ``passes`` array passes in all, over a tile
    with ``cols`` active outputs: each operation's passes pipeline (module docstring)."""
    return _pipelined(*_read_times(periphery, cols), reads, passes)


def _read_times(p: PeripheryConfig, cols: int) -> Tuple[float, float]:
    """(read, readout) time (s) of one pass over a tile with ``cols`` active outputs."""
    return p.row_driver.t_drive_s + p.dac.read_window_s, p.adc.readout_latency_s(p.adc_columns(cols), n_adcs=p.adcs_per_tile)


def _pipelined(read: float, readout: float, reads: int, passes: int) -> float:
    """``reads`` operations of ``passes`` passes in all: read + (K - 1) max(read, readout) + readout each."""
    if passes <= 0 or reads <= 0:
        return 0.0
    slow = max(read, readout)
    return reads * (read + readout - slow) + passes * slow


_UNITS: Dict[tuple, tuple] = {}  # per-configuration unit costs (the configs are frozen dataclasses)


def _unit(kind: str, p: PeripheryConfig, device: MemristiveDevice, *shape) -> tuple:
    """Unit energies and times of ``kind`` on a tile block ``shape`` of this configuration, cached.

    The key holds the configuration objects' ids and the objects themselves (so an id is never
    reused for another configuration while it is cached).
    """
    key = (kind, id(p), id(device), *shape)
    hit = _UNITS.get(key)
    if hit is not None and hit[0] is p and hit[1] is device:
        return hit[2]
    if len(_UNITS) > 4096:
        _UNITS.clear()
    value = _read_unit(p, device, *shape) if kind == "read" else write_pulse_unit(p, device)
    _UNITS[key] = (p, device, value)
    return value


def _read_unit(p: PeripheryConfig, device: MemristiveDevice, cols: int, later_row_tile: bool, row_tiles: int) -> tuple:
    dac, d = p.dac, p.digital
    passes = dac.passes_per_mvm
    v = dac.v_read_v
    t_pass = dac.read_window_s  # the integration window of one pass (bit-serial: one cycle)
    e_row = p.row_driver.energy_j(p.physical_cols(), v)  # a row line spans the whole physical tile
    e_sense = p.tia.energy_per_sample_j(t_pass) + p.sample_hold.energy_per_sample_j()
    conv_per_vr = p.adc_columns(cols) * passes  # conversions per vector-round
    e_sub = d.energy_j("add", p.adc.bits + 1) if p.subtraction == "digital" else None
    # digital work on the final round's outputs: bit-plane shift-adds per converted column, then the
    # pair / reference subtraction, then the partial sum of a later row-tile
    adds_per_v = cols * (1 if later_row_tile else 0) + p.adc_columns(cols) * (passes - 1)
    bits = p.adc.bits + math.ceil(math.log2(max(row_tiles, 1))) + (dac.bits if dac.mode == "bit_serial" else 0)
    e_add = d.accumulate_j(bits) if adds_per_v else 0.0
    read, readout = _read_times(p, cols)
    p_read = float(device.read_power_w(1.0, v))  # W per siemens of drive (the device's law)
    return (passes, dac.energy_per_input_j, e_row, p_read * t_pass, conv_per_vr, p.adc.energy_per_conversion_j,
            e_sense, e_sub, adds_per_v, e_add, read, readout, v * v * t_pass)


def _read(ev: Events, p: PeripheryConfig, device: MemristiveDevice) -> Cost:
    (passes, e_dac, e_row, v2t, conv_per_vr, e_adc, e_sense, e_sub, adds_per_v, e_add, read,
     readout, wire_v2t) = _unit("read", p, device, ev.cols, ev.row_tile > 0, ev.row_tiles)
    n, nr = ev.input_vectors, ev.vector_rounds
    rows_r = nr * ev.rows  # row drives (vector-rounds x rows)
    convs = nr * conv_per_vr
    parts = {
        "dac": (rows_r, rows_r * e_dac),
        "row_driver": (rows_r * passes, rows_r * passes * e_row),
        "cell_read": (rows_r * 2 * ev.cols, v2t * (ev.drive_g_s - ev.wire_g_s)),
        "adc": (convs, convs * e_adc),
        "sense": (convs, convs * e_sense),
    }
    if ev.wire_g_s:  # line parasitics: the wires' I^2 R (ohmic: V^2 per siemens)
        parts["wire_read"] = (rows_r * 2 * ev.cols, wire_v2t * ev.wire_g_s)
    if not nr:
        return Cost("mvm", parts, 0.0, "dac")
    if e_sub is not None:
        subs = n * ev.cols
        parts["digital_subtract"] = (subs, subs * e_sub)
    if adds_per_v:
        adds = n * adds_per_v
        parts["digital_accum"] = (adds, adds * e_add)
    return Cost("mvm", parts, _pipelined(read, readout, ev.reads, nr * passes), "dac")


def _scheme(p: PeripheryConfig, v: float) -> Tuple[float, int, float]:
    """(half-selected cells' voltage, how many there are, the selected column's swing) of a pulse of ``v``
    on a physical tile under ``periphery.write_scheme`` (docs/peripherals-energy.md §10)."""
    rows, cols = p.tile_rows, p.physical_cols()
    if p.write_scheme == "v2":
        return 0.5 * v, rows - 1 + cols - 1, 0.5 * v
    return v / 3.0, rows * cols - 1, 2.0 * v / 3.0


def lt_pulse_unit(p: PeripheryConfig, device: MemristiveDevice) -> Tuple[float, float]:
    """(driver energy J, half-select energy J) of one long-term programming pulse: like a short-term pulse
    (:func:`write_pulse_unit`) it drives its full row line and swings its column line, and the half-selected
    cells take the device's long-term pulse law at the scheme's voltage (``lt_pulse_energy_at_j``)."""
    v = device.lt_pulse_v
    v_half, n_half, swing = _scheme(p, v)
    wd = p.write_driver
    e_drv = wd.long_term_pulse_j(v, p.physical_cols()) + wd.line_capacitance_f(p.tile_rows) * swing * swing
    return e_drv, n_half * float(device.lt_pulse_energy_at_j(v_half))


def write_pulse_unit(p: PeripheryConfig, device: MemristiveDevice) -> tuple:
    """Per short-term level (ascending energy): (device energy J, driver energy J, half-select energy J,
    time s) of one pulse on a physical tile of this configuration (docs/peripherals-energy.md §10).

    A pulse drives its row line (every physical column of the tile, unused ones included) to the
    pulse voltage V and its column line to 0 while every other line sits at the scheme's level
    (``periphery.write_scheme``): the driver charges the selected row line (C V^2) and the selected
    column line by the scheme's swing (V/2 or 2V/3), plus its fixed overhead; the half-selected cells
    conduct for the pulse width at the scheme's voltage (V/2: the selected lines' other
    ``rows - 1 + columns - 1`` cells; V/3: every other cell of the tile), each taking the device's
    own pulse-energy law at that voltage. Pulses are written one at a time (a conservative
    schedule), each taking its width plus the driver's set-up time.
    """
    rows, cols = p.tile_rows, p.physical_cols()
    wd = p.write_driver
    out = []
    for (v, width), e in zip(device.sorted_pulse_levels(), device.short_term_levels()[0]):
        v_half, n_half, swing = _scheme(p, v)
        e_drv = wd.short_term_pulse_j(v, cols) + wd.line_capacitance_f(rows) * swing * swing
        e_half = n_half * float(device.st_pulse_energy_j(v_half, width))
        out.append((float(e), e_drv, e_half, wd.latency_s(width)))
    return tuple(out)


def _short_term(ev: Events, device: MemristiveDevice, p: PeripheryConfig) -> Cost:
    units = _unit("pulse", p, device)
    counts = ev.pulses_by_level
    if len(counts) > len(units):
        raise ConfigError(f"events.pulses_by_level has {len(counts)} levels: the device has {len(units)}")
    n = float(sum(counts))
    e_dev, e_drv, e_half, t = (math.fsum(c * u[k] for c, u in zip(counts, units)) for k in range(4))
    return Cost("short_term_update", {"st_pulse": (n, e_dev), "st_write_driver": (n, e_drv), "half_select": (n, e_half)},
                latency_s=t, time_component="st_write_driver")


def _decay(ev: Events, p: PeripheryConfig) -> Cost:
    parts = _leakage(ev, p)
    g = p.power_gating  # every wake-up delays the step that follows it by wake_time_s
    times = {"power_gating_wake": ev.chip_intervals * g.wake_time_s} if "power_gating_wake" in parts else {}
    if ev.bias_held_s <= 0:
        return Cost("decay", parts, ev.dt_s if parts else 0.0, "leakage", times)
    drv, ls = p.bias_driver, ev.bias_line_s  # chip-seconds the lines are held (duty included)
    lines = driven_lines(p.bias_addressing, ev.rows, p.physical_cols(ev.cols))  # drivers per chip
    if ev.bias_drawn_j > 0 or p.bias_addressing == "per_cell" or drv.supply == "linear":
        e_loss = max(ev.bias_drawn_j - ev.bias_energy_j, 0.0)  # the rail's drop (round-off only below 0)
    else:
        e_loss = ev.bias_energy_j * (1.0 / drv.efficiency - 1.0)  # switched supply
    parts["bias"] = (ev.bias_held_s, ev.bias_energy_j)
    parts["bias_driver"] = (lines * ls, e_loss + drv.p_quiescent_w * lines * ls)
    if p.bias_addressing == "per_cell":  # every physical cell's hold node, refreshed
        parts["bias_refresh"] = (ev.bias_held_s, drv.refresh_energy_j(ev.bias_held_s))
    return Cost("decay", parts, ev.dt_s, "bias", times)


def _leakage(ev: Events, p: PeripheryConfig) -> Dict[str, Tuple[float, float]]:
    """Static power of the tile over the interval, per chip (``peripherals/static.py``): the gateable
    blocks at ``residual`` of their leakage when gated (plus one wake-up per chip and interval), the
    bias references always."""
    if ev.chip_s <= 0:
        return {}
    gated, always = p.static_power_w()
    g = p.power_gating
    parts = {"leakage": (ev.chip_s, (gated * (g.residual if g.enabled else 1.0) + always) * ev.chip_s)}
    if g.enabled and ev.chip_intervals > 0:
        parts["power_gating_wake"] = (ev.chip_intervals, ev.chip_intervals * gated * g.wake_ns * 1e-9)
    return parts


def book(ledger: "EnergyLedger", layer: str, tile: str, c: Cost) -> None:
    """Add ``c`` to ``ledger`` under (layer, tile, component, c.event); the latency on ``c.time_component``."""
    for comp, (count, energy) in c.parts.items():
        ledger.add(layer, tile, comp, c.event, count, energy,
                   c.latency_s if comp == c.time_component else c.times.get(comp, 0.0))


# -- full-scale figures and area -------------------------------------------------------------------
def full_scale_read(periphery: PeripheryConfig, device: MemristiveDevice, rows: Optional[int] = None,
                    cols: Optional[int] = None, vectors: int = 1) -> Events:
    """Synthetic read of ``vectors`` full-scale input vectors on an active ``rows x cols`` block.

    Every input at full scale, every pair holding one device at ``g_max`` and one at ``g_min``,
    one read round: the upper bound of a data-driven read (defaults: the full tile).
    """
    rows = periphery.tile_rows if rows is None else check_int("rows", rows, 1, periphery.tile_rows)
    cols = periphery.tile_cols if cols is None else check_int("cols", cols, 1, periphery.tile_cols)
    check_int("vectors", vectors, 1, None)
    # bit-serial: a full-scale magnitude 2**(bits-1) - 1 has bits - 1 ones (the sign is a polarity, not
    # a pulse), the most a real read drives (crossbar/tile.py input_drive)
    drive = 1.0 if periphery.dac.mode != "bit_serial" else float(periphery.dac.bits - 1)
    g = device.g_min_s + device.g_max_s
    return Events("read", rows, cols, reads=1, input_vectors=vectors, vector_rounds=vectors,
                  drive_g_s=vectors * rows * cols * g * drive)


Layout = Union[int, Sequence[Tuple[int, int]]]


def area(layout: Layout, periphery: PeripheryConfig) -> Dict[str, float]:
    """Area (m^2) per component, plus "total", of ``layout`` (a tile count or a list of (rows, cols)
    active blocks; each block occupies one full physical tile of ``periphery``).

    Per tile: one DAC and read driver per row; ADCs = ADC columns / share; one TIA and S+H per
    ADC column; write drivers on every row and physical column; bias drivers on the lines
    ``periphery.bias_addressing`` drives (``crossbar/bias.py``), plus a 1T1C hold node per cell for
    ``per_cell``; array = rows x physical cols x cell area.
    """
    tiles = layout if isinstance(layout, int) else len(layout)
    check_int("tiles", tiles, 0, None)
    p = periphery
    rows, phys, n_conv = p.tile_rows, p.physical_cols(), p.adc_columns()
    lines = rows + phys
    per = {
        "array": rows * phys * p.cell_area_m2,
        "dac": rows * p.dac.area_m2,
        "row_driver": rows * p.row_driver.area_m2,
        "adc": p.adcs_per_tile * p.adc.area_m2,
        "tia": n_conv * p.tia.area_m2,
        "sample_hold": n_conv * p.sample_hold.area_m2,
        "write_driver": lines * p.write_driver.area_m2,
        "bias_driver": driven_lines(p.bias_addressing, rows, phys) * p.bias_driver.area_m2,
    }
    if p.bias_addressing == "per_cell":
        per["bias_cell_access"] = rows * phys * p.bias_driver.cell_area_m2
    out = {k: tiles * v for k, v in per.items()}
    out["total"] = math.fsum(out.values())
    return out


def layer_layout(n_in: int, n_out: int, periphery: PeripheryConfig) -> list:
    """(rows, cols) blocks of an ``n_in x n_out`` layer split as aihwkit does (balanced, per tile size)."""
    check_int("n_in", n_in, 1, None)
    check_int("n_out", n_out, 1, None)

    def split(n: int, size: int) -> list:
        k = math.ceil(n / size)
        return [n // k + (1 if i < n % k else 0) for i in range(k)]

    return [(r, c) for r in split(n_in, periphery.tile_rows) for c in split(n_out, periphery.tile_cols)]


def total(costs: Iterable[Cost]) -> Dict[str, float]:
    """Energy (J) per component summed over ``costs``."""
    out: Dict[str, float] = {}
    for c in costs:
        for k, (_, e) in c.parts.items():
            out[k] = out.get(k, 0.0) + e
    return out


def describe(periphery: PeripheryConfig, device: Optional[MemristiveDevice] = None) -> str:
    """``periphery.describe()`` plus the full-tile MVM energy, latency and area from the one model."""
    if device is None:
        from stoxbar.devices.presets import sto_2024

        device = sto_2024()
    c = cost(full_scale_read(periphery, device), device, periphery)
    a = area(1, periphery)
    return "\n".join([
        periphery.describe(),
        "full-tile MVM energy, full scale (pJ): " + ", ".join(f"{k} {e * 1e12:.3g}" for k, e in c.by_component().items()),
        f"full-tile MVM latency {c.latency_s * 1e9:.4g} ns; tile area {a['total'] * 1e12:.4g} um^2 "
        f"(ADC {a['adc'] * 1e12:.4g})",
    ])
