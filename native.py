"""Fused C kernels: compiled once with the system C compiler, cached, loaded with ctypes.

:func:`load` compiles a kernel source the first time it is needed into the user cache
(``$XDG_CACHE_HOME/stoxbar/kernels/<name>_<hash>.so``, hash of source, flags and CPU) and loads
it; it returns None (with one warning) when that is impossible, or when ``STOXBAR_NO_KERNEL=1``,
so callers run their pure-torch reference instead. ``ptr``, ``i64``, ``real`` build ctypes arguments.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

CFLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno")
HEADER = "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n#include <omp.h>\n"
_loaded: Dict[str, Tuple[Optional[ctypes.CDLL], Optional[str]]] = {}  # name -> (library, error)


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def load(name: str, source: Callable[[], str], functions: Sequence[str],
         cflags: Sequence[str] = CFLAGS) -> Optional[ctypes.CDLL]:
    """The kernel library ``name`` (void ``functions``), compiled from ``source()`` on first use; None if impossible."""
    hit = _loaded.get(name)
    if hit is not None:
        return hit[0]
    if os.environ.get("STOXBAR_NO_KERNEL", "") not in ("", "0"):
        _loaded[name] = (None, "disabled by STOXBAR_NO_KERNEL")
        return None
    src = source()
    key = hashlib.sha256((src + " ".join(cflags) + _cpu_tag()).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stoxbar" / "kernels"
    so = cache / f"{name}_{key}.so"
    try:
        if not so.exists():
            cache.mkdir(parents=True, exist_ok=True)
            cc = os.environ.get("CC", "cc")
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                c_file = Path(tmp) / f"{name}.c"
                c_file.write_text(src)
                out = Path(tmp) / f"{name}.so"
                subprocess.run([cc, *cflags, "-o", str(out), str(c_file), "-lm"], check=True,
                               capture_output=True, timeout=120)
                os.replace(out, so)  # atomic: concurrent processes never see half a library
        lib = ctypes.CDLL(str(so))
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        error = f"{type(exc).__name__}: {exc} {detail.decode(errors='replace')[:500]}"
        _loaded[name] = (None, error)
        warnings.warn(f"stoxbar: fused {name} kernel unavailable ({error}); using the slower pure-torch "
                      "reference", RuntimeWarning, stacklevel=3)
        return None
    for fn in functions:
        getattr(lib, fn).restype = None
    _loaded[name] = (lib, None)
    return lib


def ptr(t: Optional[Tensor]):
    """Data pointer of a contiguous tensor (NULL for None)."""
    return ctypes.c_void_p(t.data_ptr()) if t is not None else ctypes.c_void_p(0)


def i64(v: int):
    """``int64_t`` argument."""
    return ctypes.c_int64(int(v))


def suffix(dtype: torch.dtype) -> str:
    """Kernel name suffix of a float dtype (f32, f64)."""
    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"fused kernels support float32/float64, got {dtype}")


def threads(n_elements: int) -> int:
    """Kernel threads: torch's setting, but 1 for small problems (fork/join would dominate)."""
    return max(1, min(torch.get_num_threads(), n_elements // 250_000))


def real(dtype: torch.dtype, v: float):
    """``REAL`` argument (float or double, as ``dtype``)."""
    return ctypes.c_float(v) if dtype == torch.float32 else ctypes.c_double(v)
