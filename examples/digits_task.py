"""A study task outside Pong: the digits MLP of ``mlp_digits.py`` on each point's chip, accuracy and energy.

``stoxbar sweep`` calls :func:`digits_mlp` once per trial with the point's configuration (device and
periphery from the study's dotted paths) and the seed; it trains the float MLP, deploys it on the
point's STO tiles and returns accuracy and ``analyze``'s energy, latency and area. The study file
``examples/digits_adc.toml`` sweeps the ADC resolution:

    stoxbar sweep examples/digits_adc.toml --workers 2
    python examples/digits_task.py            # one trial at the default configuration
"""

from __future__ import annotations

import os
from typing import Any, Dict

import torch

from stoxbar.core.entry_points import load_entry_point

# the sibling example's data and training loop, loaded from its file (importing this module leaves
# sys.path alone, so loading it as a study task or a test module does not change later imports)
_MLP_DIGITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlp_digits.py")
accuracy, build_model, load_data, train = (load_entry_point(f"{_MLP_DIGITS}:{name}", "examples/mlp_digits.py")
                                          for name in ("accuracy", "build_model", "load_data", "train"))


def digits_mlp(config: Any, seed: int, epochs: int = 8, hidden: int = 32, batch: int = 64) -> Dict[str, float]:
    """Train in float, deploy on ``config``'s chip; float and chip accuracy, energy per image (J)."""
    from aihwkit.nn.conversion import convert_to_analog

    from stoxbar import analyze

    x_tr, y_tr, x_te, y_te = load_data(seed)
    torch.manual_seed(seed)
    model = build_model(hidden)
    train(model, x_tr, y_tr, epochs, seed)
    torch.manual_seed(seed)
    chip = convert_to_analog(model, config.rpu_config())
    report = analyze(chip, x_te[:batch])
    return {"accuracy_float": accuracy(model, x_te, y_te), "accuracy_chip": accuracy(chip, x_te, y_te),
            "energy_per_image_j": report.inference_j / batch, "programming_j": report.programming_j,
            "latency_s": report.latency_s, "area_m2": report.area_m2}


if __name__ == "__main__":
    from stoxbar.studies.spec import build_point

    print(digits_mlp(build_point(None, "sto_2024", {}, {}), 0))
