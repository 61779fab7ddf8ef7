"""Runs in Azure Storage: state, reports, checkpoints, the one-run-per-export lock, the queue."""
