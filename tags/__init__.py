"""Tag definitions, values with quality and timestamps, the live TagDatabase, computed tags and the change bus."""

from tags.bus import ChangeBatch, ChangeBus, ChangeCallback, LocalBus
from tags.catalog import TagCatalog, compile_glob
from tags.computed import ComputedTags
from tags.database import ReloadSummary, TagDatabase
from tags.expr import EvaluationError, Expression, ExpressionError, parse_expression
from tags.model import Quality, Reason, Source, TagDef, TagType, TagValue, iso

__all__ = [
    "ChangeBatch",
    "ChangeBus",
    "ChangeCallback",
    "ComputedTags",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "LocalBus",
    "Quality",
    "Reason",
    "ReloadSummary",
    "Source",
    "TagCatalog",
    "TagDatabase",
    "TagDef",
    "TagType",
    "TagValue",
    "compile_glob",
    "iso",
    "parse_expression",
]
