"""Scale-out: building collectors and a central joined by Redis Streams (``scada run --role``).

``roles`` wires the collector and central roles into the runtime; ``redis_bus`` is the
Redis change bus (publisher with an on-disk ``spool``); ``backlog`` trims the streams to
what the centrals have not acknowledged, under a hard cap; ``central`` applies every change
exactly once; ``commands`` routes writes to collectors; ``wire`` holds key names and the
entry format. See docker/README.md for the guarantees.
"""

from scada.scaleout.backlog import Backlog, BacklogPolicy, BacklogTrimmer
from scada.scaleout.central import Central, CurrentValues
from scada.scaleout.commands import CommandServer, RemoteWriter
from scada.scaleout.redis_bus import RedisBus, StreamPublisher
from scada.scaleout.roles import CentralRole, CollectorRole, filter_site
from scada.scaleout.spool import Spool
from scada.scaleout.wire import StreamKeys, tag_buildings

__all__ = [
    "Backlog",
    "BacklogPolicy",
    "BacklogTrimmer",
    "Central",
    "CentralRole",
    "CollectorRole",
    "CommandServer",
    "CurrentValues",
    "RedisBus",
    "RemoteWriter",
    "Spool",
    "StreamKeys",
    "StreamPublisher",
    "filter_site",
    "tag_buildings",
]
