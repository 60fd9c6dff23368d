"""Channel defaults: one definition for the config model and the drivers.

A configured site gets these through :mod:`drivers.config` (the channel models' field
defaults); a driver built from a channel object that lacks a setting falls back to the same
value. Constants only, so every driver module may import it.
"""

from __future__ import annotations

__all__ = [
    "BACKOFF_MAX_S",
    "MAX_GAP",
    "MAX_GAP_BITS",
    "OFFLINE_PROBE_S",
    "POLL_S",
    "RETRIES",
    "SILENCE_TIMEOUT_S",
    "TIMEOUT_S",
]

#: Reply timeout of one request (s).
TIMEOUT_S = 1.0
#: Failed requests in a row before a device counts as offline.
RETRIES = 3
#: Poll period of a device when neither it, its template nor a point says otherwise (s).
POLL_S = 10.0
#: Unused registers one read may span to coalesce two blocks.
MAX_GAP = 8
#: Unused coils / discrete inputs one read may span.
MAX_GAP_BITS = 32
#: Longest wait between two reconnect attempts (s).
BACKOFF_MAX_S = 60.0
#: How often an offline device is probed (s).
OFFLINE_PROBE_S = 30.0
#: A CAN node silent this long is offline (s).
SILENCE_TIMEOUT_S = 30.0
