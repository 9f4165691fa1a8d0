"""Long-term retention of STO conductances: the law ``drift_analog_weights(t)`` applies.

What it is for: after programming, the non-volatile (long-term) conductance of an interface-type
STO memristor relaxes back toward its relaxed, low-conductance state. The paper (docs/paper.md §1)
names long-term retention as a weakness but reports no retention curve, so the *form* and the
*parameters* here are assumptions, stated in docs/retention.md §1-2:

* Form: stretched-exponential (Kohlrausch) relaxation of the programmed excess over ``g_min``,
  ``g(t) = g_min + (g(0) - g_min) * exp(-(t / tau_ret)**beta)``, the form commonly fitted to the
  relaxation of oxide memristors (docs/retention.md §1). Both devices of a differential pair relax
  toward ``g_min``, so the signed weight decays by the same factor: ``w(t) = w(0) r(t)``.
* Per-device time constants: ``ln tau_ij = ln tau_ret + tau_dtod * xi_ij`` (log-normal,
  device-to-device), drawn once at programming.

The short-term state is *not* handled here: it decays with its own bias-controlled time constant
(``devices.dynamics.decay``).

May import: torch, stoxbar.core.validation (nothing from crossbar or above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from stoxbar.core.validation import ConfigError, check_range

__all__ = ["RetentionModel", "sto_2024_retention", "no_retention"]


@dataclass(frozen=True)
class RetentionModel:
    """Stretched-exponential retention of the long-term state (see module docstring).

    Attributes:
        tau_s: median retention time constant (s); ``math.inf`` = no retention loss.
        beta: stretching exponent in (0, 1] (1 = plain exponential).
        tau_dtod: device-to-device spread of ``ln tau`` (log-normal sigma, >= 0).
    """

    tau_s: float = 1.0e6
    beta: float = 0.5
    tau_dtod: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.tau_s, (int, float)) and not isinstance(self.tau_s, bool)) or math.isnan(self.tau_s) \
                or self.tau_s <= 0:
            raise ConfigError(f"retention.tau_s = {self.tau_s!r}: allowed range is (0, inf] s")
        check_range("retention.beta", self.beta, 0.0, 1.0, lo_open=True)
        check_range("retention.tau_dtod", self.tau_dtod, 0.0, 5.0)

    @property
    def enabled(self) -> bool:
        """False when the long-term state never relaxes (``tau_s = inf``)."""
        return math.isfinite(self.tau_s)

    def draw_tau(self, shape, dtype: torch.dtype = torch.float32,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """Per-device time constants (s), log-normal around ``tau_s`` with sigma ``tau_dtod``."""
        tau = torch.full(tuple(shape), float(self.tau_s), dtype=dtype)
        if self.enabled and self.tau_dtod > 0:
            tau = tau * torch.exp(self.tau_dtod * torch.randn(tuple(shape), generator=generator, dtype=dtype))
        return tau

    def retained_fraction(self, t_s: float, tau_s: Optional[Tensor] = None):
        """``r(t) = exp(-(t / tau)**beta)`` for ``t_s >= 0`` s (float, or a tensor if ``tau_s`` is given)."""
        check_range("t_inference", t_s, 0.0, None, unit="s")
        if not self.enabled:
            return 1.0 if tau_s is None else torch.ones_like(tau_s)
        if tau_s is None:
            return math.exp(-((t_s / self.tau_s) ** self.beta))
        return torch.exp(-((t_s / tau_s) ** self.beta))

    def relax(self, g0: Tensor, g_min_s: float, t_s: float, tau_s: Optional[Tensor] = None) -> Tensor:
        """Conductance (S) ``t_s`` seconds after programming to ``g0`` (S): ``g_min + (g0 - g_min) r(t)``."""
        r = self.retained_fraction(t_s, tau_s)
        return g_min_s + (g0 - g_min_s) * r


def sto_2024_retention() -> RetentionModel:
    """Retention assumed for the ``sto_2024`` device (docs/retention.md §2: all values assumptions)."""
    return RetentionModel(tau_s=1.0e6, beta=0.5, tau_dtod=0.3)


def no_retention() -> RetentionModel:
    """A long-term state that never relaxes (for exactness checks and the ideal device)."""
    return RetentionModel(tau_s=math.inf, beta=1.0, tau_dtod=0.0)
