"""``stoxbar`` command line: thin wrappers that parse, call the library, print and plot.

Subcommands: ``device`` (device parameters + characteristic curves), ``energy`` (per-component
energy of a layer's MVM and short-term update), ``train`` (A2C training of the Pong agent),
``play`` (the main job: Pong on the simulated STO chip, score + energy).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _device(args: argparse.Namespace) -> int:
    from stoxbar.devices import presets
    from stoxbar.devices.figures import describe, device_figure

    device = presets.get_preset(args.preset)
    print(describe(device))
    device_figure(device, args.out)
    print(f"\nwrote {args.out}")
    return 0


def _energy(args: argparse.Namespace) -> int:
    from stoxbar.scripts.energy import main as energy_main

    return energy_main(args)


def _play(args: argparse.Namespace) -> int:
    from stoxbar.scripts.play import main as play_main

    return play_main(args)


def _train(argv: List[str]) -> int:
    from stoxbar.stpn.a2c import train_main

    return train_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``stoxbar -h``)."""
    p = argparse.ArgumentParser(prog="stoxbar", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("device", help="print a device preset and plot its characteristic curves")
    d.add_argument("--preset", default="sto_2024", help="device preset (sto_2024, ideal)")
    d.add_argument("--out", default="device.png", help="PNG path for the figure")
    d.set_defaults(func=_device)

    e = sub.add_parser("energy", help="energy breakdown of one MVM and one short-term update")
    from stoxbar.scripts.energy import add_arguments as energy_args

    energy_args(e)
    e.set_defaults(func=_energy)

    pl = sub.add_parser("play", help="play Pong on the simulated STO chip; print score and energy")
    from stoxbar.scripts.play import add_arguments as play_args

    play_args(pl)
    pl.set_defaults(func=_play)

    sub.add_parser("train", help="train the Pong m-STPN agent (A2C); see `stoxbar train -h`", add_help=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``stoxbar`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _train(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
