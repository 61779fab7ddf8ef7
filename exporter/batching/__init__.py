"""Batching: serialized profiles -> Klaviyo bulk import jobs within the per-job limits."""

from exporter.batching.jobs import ImportJob, JobBatcher

__all__ = ["ImportJob", "JobBatcher"]
