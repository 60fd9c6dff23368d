"""Field-bus drivers (Modbus TCP/RTU, CAN, DL/T 645, M-Bus), poll planning, device status, writes with read-back.

Modules: ``config`` (channel, template, point and device config models), ``defaults``
(channel defaults), ``codec`` (registers <-> values), ``plan`` (poll planner), ``status``
(comm-loss, backoff), ``modbus``, ``can``, ``dlt645_driver`` and ``mbus_driver`` (channel drivers), ``dlt645``
(DL/T 645-2007 frames), ``mbus`` (M-Bus frames and variable data), ``manager`` (one driver per channel,
``write(tag, value)``), ``base`` (Driver protocol, write results and errors), ``bench``
(``scada bench poll``), ``simulator`` (buildings served over real protocols). Import the
module you need; this package imports nothing heavy on its own.
"""

__all__: list[str] = []
