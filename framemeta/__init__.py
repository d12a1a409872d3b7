"""framemeta: store and query per-video-frame metadata in TimescaleDB."""

from framemeta.config import WriterOptions
from framemeta.errors import (
    ConfigurationError,
    DatabaseError,
    FramemetaError,
    MigrationError,
    SpoolError,
    ValidationError,
)
from framemeta.query import AsyncFrameQuery, CameraInfo, FrameQuery, StatsPlan, StatsRow
from framemeta.records import BoundingBox, Detection, FrameRecord
from framemeta.schema import migrate
from framemeta.writer import FlushTimeoutError, MetadataWriter, QueueFullError, WriterStats

__all__ = [
    "AsyncFrameQuery",
    "BoundingBox",
    "CameraInfo",
    "ConfigurationError",
    "DatabaseError",
    "Detection",
    "FlushTimeoutError",
    "FrameQuery",
    "FrameRecord",
    "FramemetaError",
    "MetadataWriter",
    "MigrationError",
    "QueueFullError",
    "SpoolError",
    "StatsPlan",
    "StatsRow",
    "ValidationError",
    "WriterOptions",
    "WriterStats",
    "migrate",
]

__version__ = "0.1.0"
