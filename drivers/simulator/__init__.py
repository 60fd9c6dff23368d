"""Simulator of whole buildings serving the site's devices over real protocols.

``Simulator(site, speed=..., seed=...)`` models every building of a site config (weather,
rooms, thermostats and valves, heat meters, electricity meters with relays) and serves each
device over Modbus TCP / RTU, CAN and DL/T 645 at the addresses of the config. See
:mod:`drivers.simulator.simulator`.
"""

from drivers.simulator.faults import Fault, FaultError, FaultKind, GarbageMode
from drivers.simulator.model import ModelParams, SiteModel
from drivers.simulator.simulator import Simulator, SimulatorError

__all__ = [
    "Fault",
    "FaultError",
    "FaultKind",
    "GarbageMode",
    "ModelParams",
    "Simulator",
    "SimulatorError",
    "SiteModel",
]
