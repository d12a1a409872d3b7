"""framemeta: store and query per-video-frame metadata in TimescaleDB."""

from framemeta.errors import (
    ConfigurationError,
    DatabaseError,
    FramemetaError,
    MigrationError,
    ValidationError,
)
from framemeta.records import BoundingBox, Detection, FrameRecord
from framemeta.schema import migrate

__all__ = [
    "BoundingBox",
    "ConfigurationError",
    "DatabaseError",
    "Detection",
    "FrameRecord",
    "FramemetaError",
    "MigrationError",
    "ValidationError",
    "migrate",
]

__version__ = "0.1.0"
