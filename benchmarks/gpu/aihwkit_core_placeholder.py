"""Placeholder for aihwkit's compiled core (rpu_base), for a machine where it cannot be built.

Every name is a class whose construction raises: code that only names the core at import time
(class hierarchies, isinstance checks) imports; code that would run it fails loudly.
"""
import types


class _Placeholder(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "is_compiled":
            return lambda: False

        def _raise(*args, **kwargs):
            raise RuntimeError(f"aihwkit's compiled core is not available here ({self.__name__}.{name})")

        cls = type(name, (), {"__init__": _raise, "__module__": self.__name__})
        setattr(self, name, cls)
        return cls


import sys as _sys

for _sub in ("tiles", "devices", "cuda"):
    _mod = _Placeholder(f"{__name__}.{_sub}")
    _sys.modules[_mod.__name__] = _mod
    globals()[_sub] = _mod
