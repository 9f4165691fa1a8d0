"""Hardware-aware training with aihwkit's weight modifiers vs float training, both run on a noisy STO chip.

An MLP (20-64-4) learns a synthetic 4-class task (labels from a random teacher network). Two
copies are trained in the same way, except that one injects multiplicative weight noise in every
training forward pass (aihwkit ``WeightModifierParameter``, type ``MULT_NORMAL``): the usual
hardware-aware training (HWA) recipe. Both are then programmed onto the same noisy chip
(``sto_2024`` device, open-loop programming with the device's d2d/c2c spread, read noise,
8-bit ADC/DAC), left for a day and for ~4 months (retention with device-to-device spread of the
retention time, so aihwkit's global drift compensation cannot undo it), and evaluated. The example prints what it measures;
nothing is asserted (docs/aihwkit-support.md §6).

Usage: ``python examples/hwa_training.py [--epochs 20] [--noise 0.3] [--repeats 5] [--seed 0]
[--weight-overflow remap|clip]`` (about 10 s on one core). ``--weight-overflow`` is the training
tiles' ``STORPUConfig.weight_overflow``: trained weights past the first mapping's window are
remapped (default, training equals float) or clipped to it (a weight bound).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.parameters.enums import WeightModifierType

from stoxbar.crossbar import STORPUConfig
from stoxbar.devices import presets
from stoxbar.peripherals import PeripheryConfig


def make_task(seed: int, n_train: int = 2000, n_test: int = 2000):
    """Inputs N(0, 1) in 20-D; labels = argmax of a random 20-8-4 teacher network."""
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(20, 8, generator=g) / 20**0.5, torch.randn(8, 4, generator=g)
    x = torch.randn(n_train + n_test, 20, generator=g)
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def mlp(cfg: STORPUConfig) -> AnalogSequential:
    return AnalogSequential(AnalogLinear(20, 64, rpu_config=cfg), nn.ReLU(), AnalogLinear(64, 4, rpu_config=cfg))


def training_config(noise: float, weight_overflow: str = "remap") -> STORPUConfig:
    """Ideal device, exact IO: training itself is digital-exact; ``noise`` > 0 adds HWA noise."""
    cfg = STORPUConfig(device=presets.ideal(), weight_overflow=weight_overflow)
    cfg.forward.is_perfect = True
    if noise > 0:
        cfg.modifier.type = WeightModifierType.MULT_NORMAL
        cfg.modifier.std_dev = noise
    return cfg


def chip_config() -> STORPUConfig:
    """The noisy chip both models are evaluated on."""
    return STORPUConfig(device=presets.sto_2024(), periphery=PeripheryConfig(programming="open_loop"))


def train(noise: float, data, epochs: int, seed: int, weight_overflow: str = "remap") -> AnalogSequential:
    torch.manual_seed(seed)
    model = mlp(training_config(noise, weight_overflow))
    opt = AnalogSGD(model.parameters(), lr=0.2)
    x, y = data
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, data) -> float:
    model.eval()
    x, y = data
    return float((model(x).argmax(1) == y).float().mean())


@torch.no_grad()
def on_chip(trained: AnalogSequential, data, repeats: int, t_s: float) -> tuple:
    """Mean and std of the accuracy over ``repeats`` chips, each programmed and aged ``t_s`` seconds."""
    accs = []
    for _ in range(repeats):
        chip = mlp(chip_config())
        for src, dst in zip(trained.analog_layers(), chip.analog_layers()):
            dst.set_weights(*src.get_weights())
        chip.eval()
        chip.program_analog_weights()
        chip.drift_analog_weights(t_s)
        accs.append(accuracy(chip, data))
    acc = torch.tensor(accs)
    return float(acc.mean()), float(acc.std()) if repeats > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.3, help="MULT_NORMAL std of the HWA model")
    ap.add_argument("--repeats", type=int, default=5, help="chips per evaluation")
    ap.add_argument("--times", type=float, nargs="+", default=[86400.0, 1e7],
                    help="seconds between programming and evaluation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (small layers: 1 is fastest)")
    ap.add_argument("--weight-overflow", choices=("remap", "clip"), default="remap",
                    help="training tiles: weights past the first mapping are remapped (float-exact) or clipped")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_data, test_data = make_task(args.seed)
    print(f"task: 20-D, 4 classes, {len(train_data[0])} train / {len(test_data[0])} test samples; chip: sto_2024, "
          f"open-loop programming, read noise, 8-bit DAC/ADC; {args.repeats} chips per entry (mean +- std)")
    print("| training | accuracy (exact weights) | " + " | ".join(f"on chip, t = {t:g} s" for t in args.times) + " |")
    print("|---|---|" + "---|" * len(args.times))
    for name, noise in (("float", 0.0), (f"HWA (MULT_NORMAL {args.noise:g})", args.noise)):
        model = train(noise, train_data, args.epochs, args.seed, args.weight_overflow)
        cells = [f"{accuracy(model, test_data):.3f}"]
        for t in args.times:
            mean, std = on_chip(model, test_data, args.repeats, t)
            cells.append(f"{mean:.3f} +- {std:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
