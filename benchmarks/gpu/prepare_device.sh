#!/usr/bin/env bash
# Prepares what a run on the lent H200 (device tool) needs and its image lacks, as ignored folders to `carry`:
#   .whl   ale-py, gymnasium and Farama-Notifications wheels for its Python 3.12 (installed there with
#          pip --no-index --target /tmp/site);
#   .aihw  aihwkit 1.2.0's pure-Python package from this machine's .venv, its compiled core (rpu_base, built
#          here for Python 3.11 and torch 2.13) replaced by benchmarks/gpu/aihwkit_core_placeholder.py, whose
#          every class raises when constructed. stoxbar's batched chips use aihwkit's Python parts only
#          (TorchInferenceRPUConfig, the enums); the run sets STOXBAR_SKIP_AIHWKIT_CHECK=1 (the C++ tile
#          round trip cannot pass there). Checked here: bench_chips_cuda.py on the CPU with this placeholder
#          runs and books the same energy per agent step as with the real core.
# The tracked tree is over the device's 64 MiB: untrack training/ for the call (`git rm -r -q --cached training`,
# `/training/` in .git/info/exclude), then restore it (`git reset -q HEAD -- training`, drop the exclude line).
# Then, on the device:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && mkdir -p /tmp/p &&
#   ln -sfn $PWD /tmp/p/stoxbar && export PYTHONPATH=/tmp/p:$PWD/.aihw:/tmp/site STOXBAR_SKIP_AIHWKIT_CHECK=1 &&
#   python3 benchmarks/bench_chips_cuda.py --out $OUT/chips_cuda.json --play-chips 200 [--full]
# Budget: ale-py builds each emulator one after another and again on its seeded reset (0.16-0.27 s per
# game here, quiet to loaded, BENCHMARKS.md), so every part at 1,000 games spends minutes before its
# first step (the sim part's frame recording too): on 2026-12-04 one 570 s call finished the sim part
# (10/100/1,000 chips) and not the play part after it; a second call, 170 s, did not get the play part
# past its set-up. Run the play and full parts at 100-200 games, in a call of their own.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
grep -qx '/.aihw/' .git/info/exclude 2>/dev/null || echo /.aihw/ >>.git/info/exclude
rm -rf .whl .aihw
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl ale-py==0.12.1 gymnasium==1.4.0 farama-notifications==0.0.6
src=$(.venv/bin/python -c "import aihwkit, os; print(os.path.dirname(aihwkit.__file__))")
mkdir -p .aihw && cp -r "$src" .aihw/
rm -f .aihw/aihwkit/simulator/rpu_base*.so
find .aihw -name __pycache__ -prune -exec rm -rf {} +
mkdir -p .aihw/aihwkit/simulator/rpu_base
cp benchmarks/gpu/aihwkit_core_placeholder.py .aihw/aihwkit/simulator/rpu_base/__init__.py
du -sh .whl .aihw
