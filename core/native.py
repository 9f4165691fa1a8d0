"""Access to stoxbar's native CPU kernels: the torch extension ``stoxbar._native``.

The kernels are C++ source files (``csrc/kernels.cpp``, ``csrc/short_term.h``) built at install
by ``setup.py`` through ``torch.utils.cpp_extension`` (``pip install -e .``; rebuild in place with
``python setup.py build_ext --inplace``). They take torch tensors directly. :func:`extension`
returns the module, or None (one warning) when it was not built, does not load, or
``STOXBAR_NO_KERNEL=1`` is set; callers then run their torch reference, which gives the same
results. May import: torch only.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType
from typing import Optional

import torch

_state: dict = {}  # "module": the extension or None, "error": why not


def extension() -> Optional[ModuleType]:
    """The native kernel module, or None if it is unavailable (the torch path is used)."""
    if "module" in _state:
        return _state["module"]
    module, error = None, None
    if os.environ.get("STOXBAR_NO_KERNEL", "") not in ("", "0"):
        error = "disabled by STOXBAR_NO_KERNEL"
    else:
        try:
            module = importlib.import_module("stoxbar._native")
        except ImportError as exc:  # not built (STOXBAR_NO_NATIVE) or built against another torch
            error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"stoxbar: native kernels unavailable ({error}); using the torch path (same results, "
                          "slower). Build them with `pip install --no-deps --no-build-isolation -e .`",
                          RuntimeWarning, stacklevel=2)
    _state["module"], _state["error"] = module, error
    return module


def available() -> bool:
    """True if the native kernels are loaded."""
    return extension() is not None


def why_unavailable() -> Optional[str]:
    """Why :func:`extension` returned None (None if it is available)."""
    extension()
    return _state["error"]


def usable(*tensors: torch.Tensor) -> bool:
    """True if the kernels are loaded and can run on ``tensors``: CPU, one float32/float64 dtype."""
    if not tensors:
        return False
    dtype = tensors[0].dtype
    return (dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors) and available())
