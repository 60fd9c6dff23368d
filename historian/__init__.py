"""The historian interface and its backends (embedded SQLite, InfluxDB), store-and-forward."""

from historian.base import (
    AggFn,
    BackendUnavailable,
    Historian,
    HistorianError,
    OnTime,
    Replacement,
    Sample,
)
from historian.config import HistorianConfig
from historian.factory import open_historian

__all__ = [
    "AggFn",
    "BackendUnavailable",
    "Historian",
    "HistorianConfig",
    "HistorianError",
    "OnTime",
    "Replacement",
    "Sample",
    "open_historian",
]
