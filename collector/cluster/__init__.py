"""Several collectors sharing one log on NATS JetStream (docs/CLUSTER.md, first slice)."""
