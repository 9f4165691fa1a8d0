"""MLP classifier on scikit-learn's digits: trained in float, deployed on STO tiles, with its energy.

The network (64 -> hidden -> 10, ReLU) is trained in float with Adam, converted with aihwkit's
``convert_to_analog`` onto ``STORPUConfig`` tiles (default STO device and periphery), and evaluated
on the held-out digits both ways. ``stoxbar.analyze`` then runs one test batch on the chip and
reports energy, latency and area by layer, tile and component (programming included).

    python examples/mlp_digits.py            # full size
    python examples/mlp_digits.py --small    # a few seconds (what the test suite runs)

The factory ``build_model`` also serves the CLI:
``stoxbar energy --model examples/mlp_digits.py:build_model --input-shape 64,64``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

import torch
from torch import nn


def build_model(hidden: int = 64) -> nn.Module:
    """The float MLP, 64 pixels -> ``hidden`` -> 10 classes."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def load_data(seed: int = 0, test_fraction: float = 0.25):
    """Digits 8x8 (1,797 images, pixel values 0..16 scaled to [0, 1]), split into train and test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32) / 16.0
    y = torch.tensor(y, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(y) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> None:
    """Adam, mini-batches of 64, cross-entropy."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def run(small: bool = False, seed: int = 0) -> Dict[str, Any]:
    """Train, deploy, evaluate and analyze; returns the measured numbers."""
    from aihwkit.nn.conversion import convert_to_analog

    from stoxbar import analyze
    from stoxbar.crossbar import STORPUConfig

    x_tr, y_tr, x_te, y_te = load_data(seed)
    torch.manual_seed(seed)
    model = build_model(32 if small else 64)
    train(model, x_tr, y_tr, epochs=8 if small else 30, seed=seed)
    float_acc = accuracy(model, x_te, y_te)
    torch.manual_seed(seed)
    chip = convert_to_analog(model, STORPUConfig())
    chip_acc = accuracy(chip, x_te, y_te)
    batch = x_te[:64]
    report = analyze(chip, batch)
    return {"float_accuracy": float_acc, "chip_accuracy": chip_acc, "test_images": len(y_te),
            "batch": len(batch), "report": report,
            "energy_per_image_j": report.inference_j / len(batch)}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="small network, few epochs (seconds)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = run(args.small, args.seed)
    r = out["report"]
    print(f"digits test set ({out['test_images']} images): float accuracy {out['float_accuracy']:.3f}, "
          f"on STO tiles {out['chip_accuracy']:.3f}")
    print(f"one batch of {out['batch']} images on the chip: {r.inference_j:.4g} J forward "
          f"({out['energy_per_image_j']:.4g} J per image), programming {r.programming_j:.4g} J once, "
          f"latency {r.latency_s * 1e9:.4g} ns, area {r.area_m2 * 1e6:.4g} mm^2")
    print(r.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
