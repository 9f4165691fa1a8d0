"""A small CNN through aihwkit's ``convert_to_analog``: how its layers land on STO tiles, and what each costs.

The CNN (conv 3x3 -> ReLU -> max-pool -> conv 3x3 -> ReLU -> max-pool -> linear) is trained in float on
scikit-learn's 8x8 digits, then converted with ``convert_to_analog`` onto ``STORPUConfig`` tiles of
``--tile`` rows x columns (small tiles, so layers split over several tiles). ``stoxbar.analyze``
gives energy, latency and area per layer and per tile (``layer/i.j``), with the digital work
outside the arrays (im2col, ReLU, pooling, bias adds, output scales) counted from the torch ops run.

    python examples/cnn_tiles.py [--small] [--tile 32x32]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from stoxbar.core.entry_points import load_entry_point

# the sibling example's data and training loop, loaded from its file (importing this module leaves
# sys.path alone, so loading it as a study task or a test module does not change later imports)
_MLP_DIGITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlp_digits.py")
accuracy, load_data, train = (load_entry_point(f"{_MLP_DIGITS}:{name}", "examples/mlp_digits.py")
                              for name in ("accuracy", "load_data", "train"))


def build_model(channels: int = 8) -> nn.Module:
    """Float CNN for 1 x 8 x 8 images."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),          # 8x8 -> 4x4
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # 4x4 -> 2x2
        nn.Flatten(), nn.Linear(2 * c * 4, 10))


def run(small: bool = False, tile: str = "32x32", seed: int = 0) -> Dict[str, Any]:
    """Train, convert, evaluate and analyze; returns the measured numbers."""
    from aihwkit.nn.conversion import convert_to_analog

    from stoxbar import analyze
    from stoxbar.crossbar import STORPUConfig
    from stoxbar.peripherals import PeripheryConfig

    rows, cols = (int(v) for v in tile.lower().split("x"))
    x_tr, y_tr, x_te, y_te = load_data(seed)
    x_tr, x_te = x_tr.view(-1, 1, 8, 8), x_te.view(-1, 1, 8, 8)
    if small:  # evaluate both on the same 128 test images
        x_te, y_te = x_te[:128], y_te[:128]
    torch.manual_seed(seed)
    model = build_model(8)
    train(model, x_tr, y_tr, epochs=4 if small else 20, seed=seed)
    float_acc = accuracy(model, x_te, y_te)
    torch.manual_seed(seed)
    cfg = STORPUConfig(periphery=PeripheryConfig(tile_rows=rows, tile_cols=cols))
    chip = convert_to_analog(model, cfg)
    chip_acc = accuracy(chip, x_te, y_te)
    report = analyze(chip, x_te[:1])
    return {"float_accuracy": float_acc, "chip_accuracy": chip_acc, "report": report, "tile": (rows, cols)}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="few epochs, 128 test images (seconds)")
    p.add_argument("--tile", default="32x32", help="ROWSxCOLS of one tile")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = run(args.small, args.tile, args.seed)
    r = out["report"]
    print(f"CNN on digits: float accuracy {out['float_accuracy']:.3f}, on STO tiles {out['chip_accuracy']:.3f} "
          f"(tiles of {out['tile'][0]}x{out['tile'][1]})")
    print("one image on the chip:")
    print(r.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
