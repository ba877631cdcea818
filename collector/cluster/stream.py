"""The `LOGS` stream's settings, from the config (pure)."""

from __future__ import annotations

from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from collector.config.model import ClusterConfig, StoreConfig

STREAM = "LOGS"
SUBJECTS = "logs.>"
DUPLICATE_WINDOW = 120.0


def subject(node: str) -> str:
    """The subject a node publishes its batches on."""
    return f"logs.{node}"


def stream_config(cluster: ClusterConfig, store: StoreConfig) -> StreamConfig:
    """Stream `LOGS`: file storage, the configured replicas, the store's retention applied
    to the shared log too, a 2-minute de-duplication window, oldest messages dropped."""
    return StreamConfig(
        name=STREAM, subjects=[SUBJECTS], num_replicas=cluster.replicas,
        storage=StorageType.FILE, max_age=store.retention,
        max_bytes=store.retention_size or -1, duplicate_window=DUPLICATE_WINDOW,
        discard=DiscardPolicy.OLD)
