"""``stoxbar`` command line: thin wrappers that parse, call the library, print and plot.

Subcommands: ``device`` (device parameters + characteristic curves), ``energy`` (per-component
energy of a layer's MVM and short-term update), ``train`` (A2C training of the Pong agent),
``play`` (the main job: Pong on the simulated STO chip, score + energy), ``sweep`` (run a study
file: a grid or random sweep over device / periphery / agent parameters, locally or on Ray) and
``report`` (one self-contained HTML page from a study directory or a play report), ``compare`` (two
play reports game by game: the paired score difference), ``curves``
(learning curves of several training runs in one figure), ``train-comparison`` (the four Pong
agents x seeds, trained round-robin and resumable, with their learning-curve report).

One error path for every subcommand: arguments are checked before any work starts, and a user
error (a bad value, a missing or existing file, a locked directory, an unusable checkpoint)
prints one line ``stoxbar CMD: error: ...`` to stderr and exits 2, without a traceback
(``--debug`` anywhere on the command line, or ``STOXBAR_DEBUG=1``, shows it). An interrupted
sweep exits 130 with its finished trials kept. ``stoxbar --version`` prints the versions
(docs/reliability.md §1).

May import: everything in stoxbar (the top of the dependency order).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import List, Optional

EXIT_USAGE = 2  # user error: bad arguments, bad input files (argparse's own code)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default (``(default: ...)``), except flags and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text.lower() or action.default is None
                or action.default is False or action.default == argparse.SUPPRESS
                or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class CLIParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``PROG: error: MESSAGE`` on stderr, exit 2 (no usage dump);
    help texts show the defaults (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: allowed range is [1, inf)")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (rejects nan, inf, 0, negatives)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number of seconds > 0")
    return value


def _user_errors() -> tuple:
    from stoxbar.pong.checkpoint import CheckpointError
    from stoxbar.core.validation import ConfigError

    return (ConfigError, CheckpointError, OSError)


def _version() -> str:
    from stoxbar import __version__
    from stoxbar.core.compat import versions

    v = versions()
    extra = ", ".join(f"{k} {v[k]}" for k in ("torch", "aihwkit", "python") if k in v)
    return f"stoxbar {__version__}" + (f" ({extra})" if extra else "")


def _device(args: argparse.Namespace) -> int:
    from stoxbar.devices import presets
    from stoxbar.devices.figures import describe, device_figure
    from stoxbar.core.fsio import check_new_file, free_name

    out = check_new_file(args.out, "--out") if args.out else free_name("device.png")
    device = presets.get_preset(args.preset, "--device")
    print(describe(device))
    device_figure(device, str(out))
    print(f"\nwrote {out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from stoxbar.core.validation import ConfigError
    from stoxbar.core.fsio import check_new_file
    from stoxbar.devices import presets
    from stoxbar.devices.figures import describe, fit_figures
    from stoxbar.devices.files import write_device_file
    from stoxbar.devices.fit import best, fit_device

    out = check_new_file(args.out, "--out")
    if out.suffix.lower() != ".toml":
        raise ConfigError(f"--out = {args.out!r}: a device file ends in .toml")
    base = presets.get_preset(args.based_on, "--based-on")
    dfit = fit_device(Path(args.data_dir), base, args.name or out.stem, lt_table=args.lt_table)
    for v, fits in sorted(dfit.decay.items()):
        print(f"decay at {v:g} V: " + "; ".join(
            f"{k} AIC {r.aic:.1f} " + ", ".join(f"{p} = {r.values[p]:.4g} +- {r.errors[p]:.2g}" for p in r.values)
            for k, r in fits.items()) + f"  -> {best(fits)}")
    if dfit.tau_v:
        print(f"tau(V) = exp(c0 + c1 V): c0 = {dfit.tau_v[0]:.4g} +- {dfit.tau_v[2]:.2g}, "
              f"c1 = {dfit.tau_v[1]:.4g} +- {dfit.tau_v[3]:.2g} /V")
    if dfit.decay_law:
        d = dfit.device
        shape = {"kww": f" (beta {d.decay_beta:.3g}, {len(d.decay_modes())} modes)",
                 "biexp": f" (a {d.decay_weight:.3g}, tau2/tau1 {d.decay_tau_ratio:.3g})"}.get(dfit.decay_law, "")
        print(f"the device simulates decay law {dfit.decay_law}{shape}; tau(V) "
              + (f"tabulated at {len(dfit.tau_table)} biases (PCHIP; log-linear reduced chi^2 {dfit.tau_v_chi2:.3g})"
                 if dfit.tau_table else "log-linear"))
    if dfit.device is not None and getattr(dfit.device, "lt_table", ()):
        print(f"lookup-table device: LTP curve of {len(dfit.device.lt_table) - 1} pulses"
              + (f", LTD curve of {len(dfit.device.lt_table_ltd) - 1} pulses" if dfit.device.lt_table_ltd else ""))
    for name, r in (("dG(E) = a E^b", dfit.dg), ("retention", dfit.retention), ("LTP soft bound", dfit.ltp),
                    ("LTD soft bound (mirrored)", dfit.ltd)):
        if r is not None:
            print(f"{name}: " + ", ".join(f"{p} = {r.values[p]:.4g} +- {r.errors[p]:.2g}" for p in r.values)
                  + f", R^2 = {r.r2():.4f}")
    figs = fit_figures(dfit, str(out.with_suffix("")) + "-fit")
    write_device_file(dfit.device, out, fit=dfit.table(),
                      comment=f"written by stoxbar fit {args.data_dir} (based on {args.based_on})")
    print(describe(dfit.device))
    print(f"\nwrote {out}" + "".join(f"\nwrote {f}" for f in figs))
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
    from stoxbar.studies import load_study
    from stoxbar.studies.runner import StudyInterrupted, run_study

    if args.ray and args.timeout is not None:
        raise _config_error("--timeout is supported by the local backend only (not with --ray)")
    # --dry-run runs no user code: a task's file is checked to exist, not imported (docs/reliability.md §7)
    study = load_study(args.study, args.out, max_trials=args.max_trials, import_task=not args.dry_run,
                       checkpoint=args.checkpoint)
    trials = study.trials()
    print(f"study {study.name}: {len({t.point_id for t in trials})} points x {len(study.seeds)} seeds = "
          f"{len(trials)} trials -> {study.output}")
    if args.dry_run:
        for group, params in study.points:
            print(f"  {group:<8}{params}")
        return 0
    workers = args.workers or os.cpu_count() or 1
    failures: List[str] = []

    def on_record(rec: dict) -> None:
        if rec.get("status") != "ok":
            failures.append(f"{rec.get('trial_id')} {rec.get('params', {})}: "
                            + (str(rec.get("error", "")).strip().splitlines() or ["?"])[-1][:300])

    try:
        counts = run_study(study, workers=workers, ray_address=args.ray, timeout_s=args.timeout,
                           command=["stoxbar", *sys.argv[1:]], on_record=on_record)
    except StudyInterrupted as exc:
        _print_failures(failures)
        print(f"stoxbar sweep: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_failures(failures)
    print(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} already done; "
          f"table {study.output / 'results.csv'}, plots in {study.output / 'plots'}")
    return 1 if counts["failed"] else 0


SHOW_FAILURES = 5  # failed trials whose reason `sweep` prints (then a count)


def _print_failures(failures: List[str]) -> None:
    """The reason of each failed trial, one line each: the first SHOW_FAILURES, then how many more."""
    for line in failures[:SHOW_FAILURES]:
        print(f"failed: {line}", file=sys.stderr)
    if len(failures) > SHOW_FAILURES:
        print(f"failed: ... and {len(failures) - SHOW_FAILURES} more (see the report or trials/*.json)", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    from stoxbar.studies.report import study_status, write_report

    path = write_report(args.run, args.out, args.markdown)
    if Path(args.run).is_dir() and (Path(args.run) / "study.json").exists():
        print(f"study {args.run}: {study_status(Path(args.run))}")
    print(f"wrote {path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from stoxbar.core.fsio import atomic_write_json, check_new_file
    from stoxbar.studies.compare import compare_play_reports

    if args.json:
        check_new_file(args.json, "--json")
    rep = compare_play_reports(args.a, args.b)

    def line(tag: str, s: dict) -> str:
        sc = s["score"]
        return (f"{tag}: {s['file']} ({s['mode']}, ablate {s['ablate']}): {sc['mean']:+.2f} "
                f"[{sc['ci95']['lower']:+.2f}, {sc['ci95']['upper']:+.2f}], min {sc['min']:+.0f}")

    d = rep["difference"]
    seeds = rep["env_seeds"]
    print(line("A", rep["a"]))
    print(line("B", rep["b"]))
    print(f"A - B, paired over {rep['pairs']} games (env seeds {seeds[0]}-{seeds[-1]}, "
          + ", ".join(f"{k} {v}" for k, v in rep["protocol"].items()) + f"): {d['mean']:+.2f} "
          f"[{d['ci95']['lower']:+.2f}, {d['ci95']['upper']:+.2f}] (95 % CI, bootstrap); A better in "
          f"{d['better']}, worse in {d['worse']}, equal in {d['equal']}")
    for bnd, e in rep["energy_per_game_j"].items():
        ratio = "-" if e["a_over_b"] is None else f"{e['a_over_b']:.3f}"
        print(f"energy per game, {bnd}: A {e['a']:.4g} J, B {e['b']:.4g} J (A / B {ratio})")
    if args.json:
        atomic_write_json(args.json, rep)
        print(f"wrote {args.json}")
    return 0


def _gradients(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from stoxbar.core.fsio import atomic_write_json, check_new_file
    from stoxbar.core.validation import ConfigError, check_int
    from stoxbar.pong.a2c import TrainConfig
    from stoxbar.pong.checkpoint import CheckpointError, load_agent
    from stoxbar.pong.gradients import format_profile, format_rows, gradient_directions, state_gradient_profile

    if args.json:
        check_new_file(args.json, "--json")
    agent, ckpt = load_agent(args.checkpoint)
    if "train_config" not in ckpt:
        raise CheckpointError(f"checkpoint {args.checkpoint}: no train_config (a training run's checkpoint is needed)")
    check_int("--threads", args.threads, 1, 256)
    torch.set_num_threads(args.threads)

    def progress(i: int, n: int) -> None:
        print(f"\rgradient sample {i}/{n}", end="", file=sys.stderr, flush=True)

    cfg = TrainConfig.from_dict(ckpt["train_config"])
    if args.hebbian_grad is not None:
        cfg = dataclasses.replace(cfg, hebbian_grad=args.hebbian_grad)
    for name, given in (("--clips", args.clips), ("--cut-state", args.cut_state)):
        if given and not args.state_profile:
            raise ConfigError(f"{name} needs --state-profile")
    if args.state_profile:
        res = state_gradient_profile(agent, cfg, rollouts=args.rollouts, envs=args.envs, minibatches=args.minibatches,
                                     rollout_len=args.rollout_len, seed=args.seed, clips=args.clips,
                                     cut=args.cut_state, progress=progress)
        lines = format_profile(res)
    else:
        res = gradient_directions(agent, cfg, rollouts=args.rollouts, envs=args.envs, minibatches=args.minibatches,
                                  rollout_len=args.rollout_len, seed=args.seed, flips=args.flips, progress=progress)
        lines = format_rows(res, args.only)
    print(file=sys.stderr)
    res["checkpoint"] = str(args.checkpoint)
    print("\n".join(lines))
    if args.json:
        atomic_write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def _curves(args: argparse.Namespace) -> int:
    from stoxbar.pong.a2c import compare_curves

    summary = compare_curves(args.runs, args.out, args.window, args.max_frames)
    for run in summary.values():
        print(f"{run['label']}: {run['games']} games, {run['frames']:.3g} frames, mean return of the last "
              f"{args.window} games {run[f'mean_return_last_{args.window}']:+.2f}")
    print(f"wrote {args.out}")
    return 0


def _config_error(msg: str):
    from stoxbar.core.validation import ConfigError

    return ConfigError(msg)


def _curves_checked(args: argparse.Namespace) -> int:
    from stoxbar.core.fsio import check_new_file

    check_new_file(args.out, "--out")
    if args.window < 1:
        raise _config_error(f"--window = {args.window}: allowed range is [1, inf)")
    if args.max_frames is not None and not (math.isfinite(args.max_frames) and args.max_frames > 0):
        raise _config_error(f"--max-frames = {args.max_frames}: must be a finite number > 0")
    for run in args.runs:
        if not (Path(run) / "config.json").is_file():
            raise _config_error(f"run {run}: not a training run directory (no config.json)")
    return _curves(args)


def _train_comparison(args: argparse.Namespace) -> int:
    from stoxbar.pong.a2c import TrainingInterrupted
    from stoxbar.pong.comparison import run_main

    try:
        for line in run_main(args):
            print(line)
    except TrainingInterrupted as exc:
        print(f"stoxbar train-comparison: {exc}; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _train(argv: List[str]) -> int:
    from stoxbar.pong.a2c import TrainingInterrupted, build_parser as train_parser, run_train

    try:
        return run_train(train_parser(parser_class=CLIParser).parse_args(argv))
    except TrainingInterrupted as exc:  # the checkpoint is written; 130 as for any interrupted command
        print(f"stoxbar train: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``stoxbar -h``)."""
    p = CLIParser(prog="stoxbar", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (any position)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=CLIParser)

    d = sub.add_parser("device", help="print a device preset and plot its characteristic curves")
    from stoxbar.scripts.energy import add_device_argument

    add_device_argument(d, "sto_2024")
    d.add_argument("--out", default=None,
                   help="PNG path for the figure (never overwritten; default: device.png, or device-N.png if taken)")
    d.set_defaults(func=_device)

    ft = sub.add_parser("fit", help="fit the device laws to measured CSV files; write a device file (TOML)")
    ft.add_argument("data_dir", metavar="DATA_DIR", help="folder of decay*.csv (t_s,g_s,v_bias_v), dg_energy.csv "
                    "(energy_j,dg_s), retention.csv (t_s,g_s), pulses.csv (index,amplitude_v,width_s,g_s); "
                    "docs/device-physics.md §11")
    ft.add_argument("--out", required=True, help="device file to write (.toml, never overwritten); figures go "
                    "next to it as OUT-fit-*.png")
    ft.add_argument("--based-on", default="sto_2024", help="device whose values fill what the data do not measure "
                    "(a preset, device file or PATH.py:factory; default: sto_2024)")
    ft.add_argument("--name", default=None, help="the fitted device's name (default: the --out file's stem)")
    ft.add_argument("--lt-table", action="store_true", help="take the measured LTP/LTD runs of pulses.csv as "
                    "lookup tables (a lookup-table device) instead of the soft-bound law")
    ft.set_defaults(func=_fit)

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
    sw.add_argument("study", help="study TOML file, or a built-in study name (stoxbar/studies/builtin); a study's "
                                  "`task` is code and is imported (docs/reliability.md §7), nothing else in it is")
    sw.add_argument("--out", default=None, help="output directory (default: the study's own output, else "
                                                "runs/studies/NAME)")
    sw.add_argument("--checkpoint", default=None, metavar="PATH",
                    help="play this agent instead of the study's [base] checkpoint: a checkpoint file, 'shipped' or "
                         "'random' (e.g. a built-in study on your own trained agent; use a new --out)")
    sw.add_argument("--workers", type=positive_int, default=None, help="parallel trials, >= 1 (default: CPU count)")
    sw.add_argument("--ray", default=None, metavar="ADDRESS",
                    help="run on Ray: 'local' (start one here), 'auto' or a cluster address (default: local worker "
                         "processes)")
    sw.add_argument("--timeout", type=positive_seconds, default=None,
                    help="seconds per trial at most, local backend (default: no limit)")
    from stoxbar.studies.spec import MAX_TRIALS

    sw.add_argument("--max-trials", type=positive_int, default=MAX_TRIALS,
                    help=f"refuse a study of more trials than this (default {MAX_TRIALS}); raise it to run a bigger one")
    sw.add_argument("--dry-run", action="store_true",
                    help="validate and list the points; run nothing, import no task code")
    sw.set_defaults(func=_sweep)

    r = sub.add_parser("report", help="self-contained HTML report of a study directory or a play report")
    r.add_argument("run", help="study directory (also a running or interrupted one: its trial records are read), "
                               "play report .json, or a directory holding one")
    r.add_argument("--out", default=None, help="output path (default: beside the run; never overwrites)")
    r.add_argument("--markdown", action="store_true",
                   help="a study's table as markdown (report.md: per point the games, score mean, 95 %% CI, std, "
                        "min, the paired difference to the reference point, steps per game, the plotted metrics; "
                        "with several seeds a second table pools each point's games over its seeds)")
    r.set_defaults(func=_report)

    cm = sub.add_parser("compare", help="two `stoxbar play --json` reports compared game by game (paired score "
                                        "difference with its CI, energy per game)")
    cm.add_argument("a", help="play report A (.json)")
    cm.add_argument("b", help="play report B (.json), played with the same --seed, --sticky and --max-steps")
    cm.add_argument("--json", default=None, help="also write the comparison here (never overwritten)")
    cm.set_defaults(func=_compare)

    gr = sub.add_parser("gradients", help="does each parameter's loss gradient have a direction? t statistics over "
                                          "minibatch gradients at a checkpoint (docs/stpn.md §9.1)")
    gr.add_argument("checkpoint", help="a training run's checkpoint.pt")
    gr.add_argument("--rollouts", type=int, default=8, help="rollouts of the checkpoint's policy")
    gr.add_argument("--envs", type=int, default=16, help="emulators per rollout")
    gr.add_argument("--minibatches", type=int, default=4, help="env minibatches per rollout (gradient samples each)")
    gr.add_argument("--rollout-len", type=int, default=128, help="agent steps per rollout")
    gr.add_argument("--seed", type=int, default=100_000, help="first env seed")
    gr.add_argument("--flips", type=int, default=100, help="sign-flip draws of the null")
    gr.add_argument("--threads", type=int, default=1, help="torch threads")
    gr.add_argument("--only", nargs="*", default=[], help="print only rows starting with these names (e.g. cell.)")
    gr.add_argument("--state-profile", action="store_true",
                    help="instead: where the BPTT gradient through (h, F) grows, per minibatch (docs/stpn.md §11.2)")
    gr.add_argument("--clips", type=float, nargs="*", default=[], metavar="NORM",
                    help="with --state-profile: also the gradient with the state gradient clipped per step to NORM")
    gr.add_argument("--cut-state", default=None, metavar="PART",
                    help="with --state-profile: detach this part of the carried state (h or F) at every step, so the "
                         "BPTT runs through the other only (docs/stpn.md §11.5)")
    gr.add_argument("--hebbian-grad", default=None, metavar="MODE",
                    help="the m-STPN's Hebbian gradient setting to measure with: full or stop_activity (stoxbar train "
                         "--hebbian-grad; default: the run's own)")
    gr.add_argument("--json", default=None, help="also write the statistics here (never overwritten)")
    gr.set_defaults(func=_gradients)

    c = sub.add_parser("curves", help="overlay the learning curves of training runs (e.g. STPN vs m-STPN)")
    c.add_argument("runs", nargs="+", help="training run directories")
    c.add_argument("--out", default="curves.png", help="PNG path (never overwritten)")
    c.add_argument("--window", type=int, default=100, help="games in the running mean")
    c.add_argument("--max-frames", type=float, default=None, help="compare up to this many frames (default: all)")
    c.set_defaults(func=_curves_checked)

    tc = sub.add_parser("train-comparison", help="train and compare the four Pong agents x seeds (resumable)")
    from stoxbar.pong.comparison import main_args as comparison_args

    comparison_args(tc)
    tc.set_defaults(func=_train_comparison)

    sub.add_parser("train", help="train the Pong m-STPN agent (A2C); see `stoxbar train -h`", add_help=False)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``stoxbar`` console script; returns the exit code (module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("STOXBAR_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    cmd = next((a for a in argv if not a.startswith("-")), None)
    prog = f"stoxbar {cmd}" if cmd else "stoxbar"
    from stoxbar.core import fsio

    # Ctrl-C is recorded as well as raised: a library that swallows the KeyboardInterrupt (a bare
    # except in an import) or is left half-imported by it and fails afterwards still ends the
    # command as interrupted, and no result file appears after it (fsio.atomic_write_bytes)
    fsio.clear_interrupts()
    old_handler = _install_sigint(fsio.sigint_handler)
    try:
        if argv and argv[0] == "train":
            rc = _train(argv[1:])
        else:
            args = build_parser().parse_args(argv)
            rc = args.func(args)
        if fsio.interrupted():
            raise KeyboardInterrupt
        return rc
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - sorted below: interrupted, a user's mistake, or a bug (raised)
        if fsio.interrupted():
            if debug:
                traceback.print_exc()
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not isinstance(exc, _user_errors()):
            raise
        if debug:
            traceback.print_exc()
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"{prog}: error: {text}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        _install_sigint(old_handler)
        fsio.clear_interrupts()


def _install_sigint(handler):
    """Install ``handler`` for SIGINT and return the previous one (None, and nothing done, off the main
    thread or for None)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, handler)


if __name__ == "__main__":
    sys.exit(main())
