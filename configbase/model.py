"""The strict base of every config model, and the id syntax every section shares.

Every model forbids unknown keys and is frozen: a configuration is parsed once, at the
edge, and read-only afterwards. Imports only pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = ["ID_PATTERN", "ConfigModel", "Id"]

#: Ids of channels, devices, buildings, households, accounts and tag names: dot-separated
#: parts of letters, digits, ``_`` and ``-`` (no glob characters, no empty parts).
ID_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class ConfigModel(BaseModel):
    """A config model: unknown keys are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
