"""The core utilities every layer may use: validation (``ConfigError`` and checks), atomic file I/O
(``fsio``), the native kernels' loader (``native``), the aihwkit/torch compatibility check
(``compat``) and user entry points (``entry_points``: the one place code named by the user is
loaded). Nothing here knows a device, a circuit or a network.

May import: stoxbar.core.
"""
