"""Names for the numpy array types the tag packages pass around (typing only)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "CodeArray", "FloatArray", "IdArray"]

IdArray: TypeAlias = npt.NDArray[np.int64]
"""Tag ids (int64)."""
FloatArray: TypeAlias = npt.NDArray[np.float64]
"""Values and epoch-second timestamps (float64)."""
BoolArray: TypeAlias = npt.NDArray[np.bool_]
"""Flags and id-indexed masks (bool)."""
CodeArray: TypeAlias = npt.NDArray[np.uint8]
"""Quality, reason and kind codes (uint8)."""
