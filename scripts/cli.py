"""``stoxbar`` command line: thin wrappers that parse, call the library, print and plot.

Subcommands: ``device`` (device parameters + characteristic curves), ``energy`` (per-component
energy of a layer's MVM and short-term update), ``train`` (A2C training of the Pong agent),
``play`` (the main job: Pong on the simulated STO chip, score + energy), ``sweep`` (run a study
file: a grid or random sweep over device / periphery / agent parameters, locally or on Ray) and
``report`` (one self-contained HTML page from a study directory or a play report), ``curves``
(learning curves of several training runs in one figure).
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


def _paper(args: argparse.Namespace) -> int:
    from stoxbar.scripts.paper import main as paper_main

    return paper_main(args)


def _sweep(args: argparse.Namespace) -> int:
    import os

    from stoxbar.studies import load_study
    from stoxbar.studies.runner import run_study

    study = load_study(args.study, args.out)
    trials = study.trials()
    print(f"study {study.name}: {len({t.point_id for t in trials})} points x {len(study.seeds)} seeds = "
          f"{len(trials)} trials -> {study.output}")
    if args.dry_run:
        for group, params in study.points:
            print(f"  {group:<8}{params}")
        return 0
    workers = args.workers or os.cpu_count() or 1
    counts = run_study(study, workers=workers, ray_address=args.ray, timeout_s=args.timeout,
                       command=["stoxbar", *sys.argv[1:]])
    print(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} already done; "
          f"table {study.output / 'results.csv'}, plots in {study.output / 'plots'}")
    return 1 if counts["failed"] else 0


def _report(args: argparse.Namespace) -> int:
    from stoxbar.studies.report import write_report

    print(f"wrote {write_report(args.run, args.out)}")
    return 0


def _curves(args: argparse.Namespace) -> int:
    from stoxbar.pong.a2c import compare_curves

    summary = compare_curves(args.runs, args.out, args.window, args.max_frames)
    for run in summary.values():
        print(f"{run['label']}: {run['games']} games, {run['frames']:.3g} frames, mean return of the last "
              f"{args.window} games {run[f'mean_return_last_{args.window}']:+.2f}")
    print(f"wrote {args.out}")
    return 0


def _train(argv: List[str]) -> int:
    from stoxbar.pong.a2c import train_main

    return train_main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``stoxbar -h``)."""
    p = argparse.ArgumentParser(prog="stoxbar", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("device", help="print a device preset and plot its characteristic curves")
    d.add_argument("--preset", default="sto_2024",
                   help="device preset: a registered name (sto_2024, ideal, ...) or 'module:factory'")
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

    pa = sub.add_parser("paper", help="the paper's energy estimate from our models; --waterfall: the steps to ours")
    from stoxbar.scripts.paper import add_arguments as paper_args

    paper_args(pa)
    pa.set_defaults(func=_paper)

    sw = sub.add_parser("sweep", help="run a study file (grid/random sweep), resumable, locally or on Ray")
    sw.add_argument("study", help="study TOML file, or a built-in study name (stoxbar/studies/builtin)")
    sw.add_argument("--out", default=None, help="output directory (default: the study's own)")
    sw.add_argument("--workers", type=int, default=None, help="parallel trials (default: CPU count)")
    sw.add_argument("--ray", default=None, metavar="ADDRESS",
                    help="run on Ray: 'local' (start one here), 'auto' or a cluster address")
    sw.add_argument("--timeout", type=float, default=None, help="seconds per trial at most (local backend)")
    sw.add_argument("--dry-run", action="store_true", help="validate and list the points; run nothing")
    sw.set_defaults(func=_sweep)

    r = sub.add_parser("report", help="self-contained HTML report of a study directory or a play report")
    r.add_argument("run", help="study directory, play report .json, or a directory holding one")
    r.add_argument("--out", default=None, help="HTML path (default: beside the run; never overwrites)")
    r.set_defaults(func=_report)

    c = sub.add_parser("curves", help="overlay the learning curves of training runs (e.g. STPN vs m-STPN)")
    c.add_argument("runs", nargs="+", help="training run directories")
    c.add_argument("--out", default="curves.png", help="PNG path (never overwritten)")
    c.add_argument("--window", type=int, default=100, help="games in the running mean")
    c.add_argument("--max-frames", type=float, default=None, help="compare up to this many frames")
    c.set_defaults(func=_curves)

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
