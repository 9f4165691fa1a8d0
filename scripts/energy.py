"""``stoxbar energy``: per-component energy of one MVM and one short-term update of a layer,
or (``--model FILE_OR_MODULE:FACTORY --input-shape ...``) of one forward pass of any torch model.

Runs the real simulation (an aihwkit ``AnalogLinear`` on STO tiles with the chosen periphery),
so the counts come from the data flow: tiles, converter passes, bound-management repeats. With
``--model`` the factory's model runs once through :func:`stoxbar.analysis.analyze` (converted with
an ``STORPUConfig`` of the chosen device and periphery when it has no analog layers yet).

May import: everything in stoxbar (the top of the dependency order).
"""

from __future__ import annotations

import argparse
import io
import os
from dataclasses import replace
from typing import Optional

import torch

from stoxbar.core.fsio import atomic_write_bytes, check_new_file
from stoxbar.core.validation import ConfigError, check_range

# assumption: the CLI accepts decay intervals up to one day; longer ones are outside anything the
# device's retention law was characterised for (and 1e300 s gives non-finite powers)
MAX_DT_S = 86_400.0
DEFAULT_LAYER = "2656x64"  # the paper's STP layer (docs/paper.md §2: 2592 + 64 inputs, 64 units)
# Memory estimates that refuse a size before anything is allocated (docs/reliability.md §7):
# a layer of N synapses on STO tiles peaked at ~119 bytes per synapse (2000x2000 layer_breakdown, RSS
# measured on CPU, Dec 2026); 128 B is that, rounded up.
BYTES_PER_SYNAPSE = 128
# assumption: one forward pass of --model holds the example input several times over (its float copy,
# converter-quantised and im2col-unfolded copies, activations); 16x the float32 input is our margin.
BYTES_PER_INPUT_ELEMENT = 4 * 16
# assumption: an example input of more than 2^28 elements (1 GiB as float32) is not one forward pass
# anyone analyses; larger ones are refused whatever the machine's memory.
MAX_INPUT_ELEMENTS = 2**28


def memory_limit_bytes() -> int:
    """Memory a command may plan to use: half of MemAvailable (/proc/meminfo), else half of physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError, AttributeError):
        return 2**34


def check_memory(flag: str, value: str, need_bytes: int) -> None:
    """ConfigError naming ``flag``, the estimated size and the limit if ``need_bytes`` cannot fit."""
    limit = memory_limit_bytes()
    if need_bytes > limit:
        raise ConfigError(f"{flag} = {value!r}: needs about {need_bytes / 2**30:.3g} GiB of memory, more than the "
                          f"limit of {limit / 2**30:.3g} GiB (half of the memory available now)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``stoxbar energy``."""
    p.add_argument("--layer", default=None, help=f"IN x OUT synapses (default: {DEFAULT_LAYER}, the paper's STP "
                                                   "layer; not with --model)")
    p.add_argument("--model", default=None, metavar="FILE_OR_MODULE:FACTORY",
                   help="analyze one forward pass of the model this factory returns (instead of --layer); imports "
                        "that file or module: it runs code (docs/reliability.md §7)")
    p.add_argument("--input-shape", default=None, metavar="N,C,H,W",
                   help="shape of the example input for --model, e.g. 1,1,28,28 (random normal values)")
    add_device_argument(p, "sto_2024")
    add_periphery_arguments(p)
    add_accel_arguments(p)
    p.add_argument("--dt", type=float, default=4 / 60, help="decay interval in s (default: one agent step)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--json", default=None, help="write the breakdown as JSON (never overwrites)")
    p.add_argument("--plot", default=None, help="write a PNG bar chart here (never overwrites; default: none)")


DEVICE_HELP = ("device: a registered preset (sto_2024, ideal, ...), a device file PATH.toml (data: stoxbar fit "
               "writes one), or PATH.py:factory / module:factory (imports that file or module: it runs code, "
               "docs/reliability.md §7)")


def add_device_argument(p: argparse.ArgumentParser, default: Optional[str], extra: str = "") -> None:
    """``--device`` (alias ``--preset``): one option, resolved by :func:`stoxbar.devices.presets.get_preset`."""
    p.add_argument("--device", "--preset", dest="preset", default=default, metavar="DEVICE",
                   help=DEVICE_HELP + extra + (f" (default: {default})" if default else ""))


def add_periphery_arguments(p: argparse.ArgumentParser) -> None:
    """Periphery overrides shared by ``stoxbar energy`` and ``stoxbar play``."""
    p.add_argument("--adc-bits", type=int, default=None, help="ADC resolution (default from the periphery preset)")
    p.add_argument("--dac-bits", type=int, default=None, help="DAC resolution (default from the periphery preset)")
    p.add_argument("--dac-mode", choices=("multibit", "pwm", "bit_serial"), default=None,
                   help="how the DAC drives the rows (default from the periphery preset)")
    p.add_argument("--adc-share", type=int, default=None, help="columns per ADC (default from the periphery preset)")
    p.add_argument("--tile", default=None, help="ROWSxCOLS tile size (default from the periphery preset)")
    p.add_argument("--parasitics", choices=("off", "first_order", "full"), default=None,
                   help="line parasitics in the read (wire resistance per cell at 32 nm, docs/peripherals-energy.md "
                        "§6) (default from the periphery preset: off)")
    add_bias_arguments(p)


def add_bias_arguments(p: argparse.ArgumentParser) -> None:
    """How the decay bias reaches the cells (``periphery.bias_addressing``, crossbar/bias.py); shared
    by ``energy``, ``play`` and ``paper``."""
    from stoxbar.peripherals.drivers import BIAS_ADDRESSINGS, BIAS_SUPPLIES

    p.add_argument("--bias-addressing", choices=BIAS_ADDRESSINGS, default=None,
                   help="how the decay bias reaches the cells; a bias the scheme cannot hold is projected "
                        "(least squares per tile) and the residual reported (default: per_cell)")
    p.add_argument("--bias-duty", type=float, default=None,
                   help="fraction of each step the decay bias is held, (0, 1] (default 1)")
    p.add_argument("--bias-supply", choices=BIAS_SUPPLIES, default=None,
                   help="line bias supply: switched (efficiency) or linear from the rail (default switched)")
    p.add_argument("--bias-rails", default=None,
                   help="comma-separated quantised bias rails in V, e.g. 0,0.2,0.4,0.6 (default: none)")


def parse_layer(text: str, flag: str = "--layer", example: str = "2656x64") -> tuple[int, int]:
    """``'2656x64'`` -> (2656, 64); a ConfigError naming ``flag`` otherwise."""
    try:
        n_in, n_out = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} = {text!r}: expected AxB with two integers, e.g. {example}") from None
    if n_in < 1 or n_out < 1:
        raise ConfigError(f"{flag} = {text!r}: both sizes must be >= 1")
    return n_in, n_out


def add_accel_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the digital-accelerator baseline (docs/energy-model.md §9.1)."""
    p.add_argument("--accel-bits", type=int, default=None,
                   help="digital-accelerator baseline: operand and stored width (bits; default 8)")
    p.add_argument("--accel-reuse", default=None, help="digital-accelerator baseline: SRAM reuse model, per_op "
                   "(every op's operands through SRAM, default) | per_step (a fused datapath)")
    p.add_argument("--accel-power-gating", action="store_true",
                   help="digital-accelerator baseline: SRAM at its retention voltage between steps")


def accel_from_args(args: argparse.Namespace):
    """The digital-accelerator spec with the command-line overrides (validated; errors name the flag)."""
    from stoxbar.peripherals.digital_accel import DigitalAccelSpec

    kw = {"power_gating": bool(args.accel_power_gating)}
    if args.accel_bits is not None:
        kw["mac_bits"] = args.accel_bits
    if args.accel_reuse is not None:
        kw["reuse"] = args.accel_reuse
    try:
        return DigitalAccelSpec(**kw)
    except ConfigError as exc:
        flag = "--accel-bits" if "mac_bits" in str(exc) else "--accel-reuse"
        raise ConfigError(f"{flag}: {exc}") from None


def _rails(text: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--bias-rails = {text!r}: expected comma-separated voltages, e.g. 0,0.2,0.4,0.6") from None


def bias_steps(args: argparse.Namespace) -> list:
    """(flag, value, apply) of the bias options (``add_bias_arguments``)."""
    return [("--bias-addressing", getattr(args, "bias_addressing", None), lambda q, v: replace(q, bias_addressing=v)),
            ("--bias-duty", getattr(args, "bias_duty", None), lambda q, v: replace(q, bias_duty=v)),
            ("--bias-supply", getattr(args, "bias_supply", None),
             lambda q, v: replace(q, bias_driver=replace(q.bias_driver, supply=v))),
            ("--bias-rails", getattr(args, "bias_rails", None), lambda q, v: replace(q, bias_rails_v=_rails(v)))]


def periphery_from_args(args: argparse.Namespace, device=None):
    """Default periphery with the command-line overrides applied (validated); with a ``device``, the DAC
    drives that device's read voltage (``STORPUConfig`` checks they agree)."""
    from stoxbar.peripherals import PeripheryConfig

    p = PeripheryConfig()
    if device is not None and p.dac.v_read_v != device.v_read_v:
        p = replace(p, dac=replace(p.dac, v_read_v=device.v_read_v))
    steps = [("--adc-bits", args.adc_bits, lambda q, v: q.with_adc_bits(v)),
             ("--dac-bits", args.dac_bits, lambda q, v: q.with_dac_bits(v)),
             ("--dac-mode", args.dac_mode, lambda q, v: replace(q, dac=replace(q.dac, mode=v))),
             ("--tile", args.tile, lambda q, v: q.with_tile(*parse_layer(v, "--tile", "256x64"))),
             ("--adc-share", args.adc_share, lambda q, v: q.with_adc_share(v)),
             ("--parasitics", getattr(args, "parasitics", None),
              lambda q, v: replace(q, parasitics=replace(q.parasitics, mode=v)))] + bias_steps(args)
    return apply_steps(p, steps)


def apply_steps(p, steps: list):
    """Apply (flag, value, apply) overrides to the periphery ``p``; a ConfigError names the flag."""
    for flag, value, apply in steps:
        if value is None:
            continue
        try:
            p = apply(p, value)
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(flag) else f"{flag} {value}: {msg}") from None
    return p


def layer_breakdown(n_in: int, n_out: int, device, periphery, dt_s: float, seed: int = 0, reports: Optional[list] = None):
    """Ledgers of one MVM and of one short-term update + decay interval on an ``n_in x n_out`` layer
    (the held bias's :class:`~stoxbar.crossbar.bias.BiasReport` appended to ``reports`` if given)."""
    from aihwkit.nn import AnalogLinear

    from stoxbar.crossbar import EnergyLedger, STORPUConfig, attach_ledger, flush_events

    gen = torch.Generator().manual_seed(seed)
    layer = AnalogLinear(n_in, n_out, bias=False, rpu_config=STORPUConfig(device=device, periphery=periphery))
    layer.eval()
    layer.set_weights((torch.rand(n_out, n_in, generator=gen) * 2 - 1) * 0.5)
    mvm, update = EnergyLedger(), EnergyLedger()
    module = layer.analog_module
    module.set_batch(1)
    attach_ledger(layer, mvm, prefix="", book_pending=False)  # programming is not part of one MVM
    with torch.no_grad():
        layer(torch.rand(1, n_in, generator=gen) * 2 - 1)
    attach_ledger(layer, update, book_pending=False)  # nor of one short-term update
    v = torch.full((n_out, n_in), 0.5 * (device.v_bias_min_v + device.v_bias_max_v))
    report = module.set_bias(v)
    if reports is not None:
        reports.append(report)
    levels = device.short_term_levels()[1]
    delta = torch.randn(1, n_out, n_in, generator=gen) * float(levels[0]) / device.g_range_s
    module.apply_short_term(delta)
    module.decay(dt_s)
    flush_events(layer)  # book what the tiles recorded before the ledgers are read
    return mvm, update


def _table(title: str, ledger) -> str:
    total = ledger.total_j
    lines = [f"{title}: {total:.4g} J", f"  {'component':<18}{'energy (J)':>14}{'share':>9}{'events':>14}"]
    for (comp,), e in sorted(ledger.totals(("component",)).items(), key=lambda kv: -kv[1].energy_j):
        share = 100 * e.energy_j / total if total > 0 else 0.0
        lines.append(f"  {comp:<18}{e.energy_j:>14.4g}{share:>8.1f}%{e.count:>14.4g}")
    return "\n".join(lines)


def plot_breakdown(path: str, parts: dict) -> None:
    """Horizontal stacked bars, one per ledger (J, log scale), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.9 * len(parts)))
    comps = sorted({c for led in parts.values() for c in led.by_component()})
    cmap = plt.get_cmap("tab20")
    for row, (name, led) in enumerate(parts.items()):
        left, total = 0.0, led.total_j
        for k, comp in enumerate(comps):
            share = led.by_component().get(comp, 0.0) / total if total > 0 else 0.0
            ax.barh(row, share, left=left, color=cmap(k % 20), label=comp if row == 0 else None)
            left += share
        ax.text(1.01, row, f"{total:.3g} J", va="center")
    ax.set_yticks(range(len(parts)), list(parts))
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of energy")
    ax.legend(ncol=3, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())  # never overwrites


def parse_shape(text: str | None) -> tuple[int, ...]:
    """``'1,1,28,28'`` -> (1, 1, 28, 28); clear error otherwise."""
    try:
        shape = tuple(int(v) for v in (text or "").replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise ConfigError(f"--input-shape = {text!r}: expected positive integers separated by commas, e.g. 1,1,28,28")
    n = 1
    for v in shape:
        n *= v
    if n > MAX_INPUT_ELEMENTS:
        raise ConfigError(f"--input-shape = {text!r}: {n} elements ({4 * n / 2**30:.3g} GiB as float32) is more than "
                          f"the limit of {MAX_INPUT_ELEMENTS} elements ({4 * MAX_INPUT_ELEMENTS / 2**30:.3g} GiB) "
                          "for one example input")
    check_memory("--input-shape", text or "", n * BYTES_PER_INPUT_ELEMENT)
    return shape


def expected_input(model) -> str:
    """The input shape the model's first Conv / Linear layer expects, e.g. ``N,1,H,W`` or ``N,64`` ("" if unknown)."""
    for m in model.modules():
        if hasattr(m, "in_channels") and hasattr(m, "kernel_size"):
            dims = len(m.kernel_size) if isinstance(m.kernel_size, tuple) else 2
            return f"N,{m.in_channels}," + {1: "L", 2: "H,W"}.get(dims, "D,H,W")
        if hasattr(m, "in_features"):
            return f"N,{m.in_features}"
    return ""


def model_main(args: argparse.Namespace) -> int:
    """``stoxbar energy --model``: analyze the factory's model on one random input."""
    from torch import nn

    from stoxbar.analysis import analyze
    from stoxbar.core.entry_points import load_entry_point
    from stoxbar.crossbar import STORPUConfig, write_json_atomic
    from stoxbar.devices import presets

    if args.json:
        check_new_file(args.json, "--json")
    if args.layer is not None:
        raise ConfigError(f"--layer = {args.layer!r}: not with --model (the model's own layers are analysed); give one "
                          "of them")
    if args.input_shape is None:
        raise ConfigError(f"--model = {args.model!r} needs --input-shape N,C,H,W (the example input's shape, e.g. "
                          "1,1,28,28)")
    shape = parse_shape(args.input_shape)
    factory = load_entry_point(args.model, "--model")
    try:
        model = factory()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: name it and why
        raise ConfigError(f"--model {args.model}: the factory raised {type(exc).__name__}: {exc}; expected it to "
                          "return a torch.nn.Module") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"--model {args.model}: the factory returned {type(model).__name__}; expected a "
                          "torch.nn.Module")
    torch.manual_seed(args.seed)
    device = presets.get_preset(args.preset, "--device")
    cfg = STORPUConfig(device=device, periphery=periphery_from_args(args, device))
    try:
        report = analyze(model, torch.randn(*shape), rpu_config=cfg, accel=accel_from_args(args))
    except (RuntimeError, ValueError, IndexError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ConfigError):  # analyze's own message names the shape; say what the model expects
            if not text.startswith("example_input shape"):
                raise
            text = text.split("; expected the input")[0]
        elif not any(w in text.lower() for w in ("shape", "size", "dimension", "mat1")):
            raise
        want = expected_input(model)
        raise ConfigError(f"--input-shape = {args.input_shape!r}: does not fit the model"
                          + (f"; its first layer expects an input of shape {want}" if want else "")
                          + f" ({text[:200]})") from None
    print(f"model {args.model}, device {args.preset}, tile {cfg.periphery.tile_rows}x{cfg.periphery.tile_cols}")
    print(report.table())
    if args.json:
        write_json_atomic(args.json, {"model": args.model, "input_shape": list(shape), "preset": args.preset,
                                      **report.to_dict()})
        print(f"wrote {args.json}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``stoxbar energy``."""
    from stoxbar.crossbar import write_json_atomic
    from stoxbar.devices import presets

    if getattr(args, "model", None):
        return model_main(args)
    if getattr(args, "input_shape", None):
        raise ConfigError("--input-shape needs --model FILE_OR_MODULE:FACTORY")
    layer = args.layer or DEFAULT_LAYER
    n_in, n_out = parse_layer(layer)
    check_memory("--layer", layer, n_in * n_out * BYTES_PER_SYNAPSE)
    check_range("--dt", args.dt, 0.0, MAX_DT_S, lo_open=True, unit="s")
    if args.seed < 0:
        raise ConfigError(f"--seed = {args.seed}: allowed range is [0, inf)")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_new_file(path, flag)
    device = presets.get_preset(args.preset, "--device")
    periphery = periphery_from_args(args, device)
    bias_reports: list = []
    mvm, update = layer_breakdown(n_in, n_out, device, periphery, args.dt, args.seed, bias_reports)
    print(f"layer {n_in}x{n_out} ({n_in * n_out} synapses), device {args.preset}, "
          f"tile {periphery.tile_rows}x{periphery.tile_cols}, DAC {periphery.dac.bits} b {periphery.dac.mode}, "
          f"ADC {periphery.adc.bits} b shared by {periphery.adc.share}")
    print(_table("one MVM (batch 1)", mvm))
    print(_table(f"one short-term update + {args.dt:.4g} s decay", update))
    print(f"write phase of that update: {update.latency_s(event='short_term_update'):.4g} s (pulses one at a time "
          f"per tile, {periphery.write_scheme} scheme; tiles in parallel)")
    extra = {}
    if periphery.parasitics.mode != "off":
        par = periphery.parasitics
        from stoxbar.analysis.run import ir_drop_rel_error

        extra = {"parasitics": {"mode": par.mode, "r_row_ohm": par.r_row_ohm, "r_col_ohm": par.r_col_ohm,
                                "ir_drop_rel_error": ir_drop_rel_error(n_in, n_out, device, periphery, args.seed),
                                "bias_wire_drop_max_v": bias_reports[0].wire_drop_max_v,
                                "bias_wire_drop_rms_v": bias_reports[0].wire_drop_rms_v,
                                "bias_tau_rel_error_max": bias_reports[0].wire_tau_err_max}}
        print(f"line parasitics ({par.mode}, {par.r_row_ohm:g} / {par.r_col_ohm:g} ohm per cell, row / column): "
              f"MVM error from the wires alone {extra['parasitics']['ir_drop_rel_error']:.3g} (relative, L2); "
              f"held bias ({periphery.bias_addressing}) dropped by up to {1e3 * bias_reports[0].wire_drop_max_v:.3g} mV "
              f"(RMS {1e3 * bias_reports[0].wire_drop_rms_v:.3g} mV): tau off by up to "
              f"{100 * bias_reports[0].wire_tau_err_max:.3g} %")
    if args.json:
        write_json_atomic(args.json, {"layer": [n_in, n_out], "preset": args.preset,
                                      "mvm": mvm.to_dict(), "short_term_step": update.to_dict(), **extra})
        print(f"wrote {args.json}")
    if args.plot:
        plot_breakdown(args.plot, {"MVM": mvm, "ST update + decay": update})
        print(f"wrote {args.plot}")
    return 0
