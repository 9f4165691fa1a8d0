"""Load a user's callable named ``"FILE.py:NAME"`` or ``"package.module:NAME"`` (``stoxbar energy
--model``, the studies' task entry points).

May import: stoxbar.core.validation.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from stoxbar.core.validation import ConfigError

__all__ = ["load_entry_point"]


def load_entry_point(spec: str, what: str = "entry point") -> Callable[..., Any]:
    """``"FILE.py:NAME"`` or ``"package.module:NAME"`` -> the callable it names (ConfigError otherwise)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"{what} = {spec!r}: expected FILE_OR_MODULE:NAME, e.g. examples/mlp_digits.py:build "
                          "or mypkg.models:make_model")
    target, attr = spec.split(":")
    try:
        if target.endswith(".py") or Path(target).exists():
            path = Path(target).resolve()
            if not path.is_file():
                raise ConfigError(f"{what} = {spec!r}: file {target} not found")
            mod_name = f"_stoxbar_entry_{abs(hash(str(path)))}"
            module = sys.modules.get(mod_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(mod_name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[mod_name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[mod_name]
                    raise
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import: say which and why
        raise ConfigError(f"{what} = {spec!r}: importing {target} failed ({type(exc).__name__}: {exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{what} = {spec!r}: {target} has no callable {attr!r}")
    return fn
