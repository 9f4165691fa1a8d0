"""Build of stoxbar's native CPU kernels (csrc/*.cpp) as the torch extension ``stoxbar._native``.

Metadata lives in pyproject.toml; this file only adds the extension. It is built at install
(``pip install --no-deps --no-build-isolation -e .``, torch importable at build time) with
portable flags (no ``-march=native``); ``-ffp-contract=off`` keeps the kernels bit-identical to
their torch references. If the build is skipped (``STOXBAR_NO_NATIVE=1``), or the extension is
missing or cannot be loaded, stoxbar runs on its torch path (see ``stoxbar/core/native.py``); a compile
error does stop the install (it needs the same C++ compiler as aihwkit's build). The setuptools build
backend executes this file as ``__main__``; imported as a module (it lies in the package's folder)
it does nothing.
"""

import os

from setuptools import setup

ext_modules, cmdclass = [], {}
try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:  # an isolated build without torch: no kernels, the torch path runs
    BuildExtension = CppExtension = None
if CppExtension is not None and os.environ.get("STOXBAR_NO_NATIVE", "") in ("", "0"):
    ext_modules = [CppExtension(
        "stoxbar._native", ["csrc/kernels.cpp", "csrc/analog_mvm.cpp"], include_dirs=["csrc"],
        depends=["csrc/short_term.h", "csrc/analog_mvm.h"],
        extra_compile_args=["-O3", "-g0", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"],
        extra_link_args=["-fopenmp"])]
    cmdclass = {"build_ext": BuildExtension}

if __name__ == "__main__":  # pip's build backend runs this file as __main__; importing it does nothing
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
