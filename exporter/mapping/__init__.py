"""Mapping: segment rows -> validated, serialized Klaviyo profiles (or rejects)."""

from exporter.mapping.dedupe import Deduplicator
from exporter.mapping.fields import FieldMapping
from exporter.mapping.mapper import MappedProfile, ProfileMapper

__all__ = ["Deduplicator", "FieldMapping", "MappedProfile", "ProfileMapper"]
