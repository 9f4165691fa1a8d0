"""The STPN and m-STPN networks: digital reference cells and the analog m-STPN on STO tiles.

A client of the crossbar substrate: the m-STPN's Hebbian short-term rule lives here and drives the
substrate's generic operations (read, decay, requested short-term change). May import
``devices``, ``peripherals``, ``crossbar``; never ``pong`` (the task).
"""

from stoxbar.stpn.cells import MSTPNCell, STPNCell, kernel_available

__all__ = ["STPNCell", "MSTPNCell", "kernel_available"]
