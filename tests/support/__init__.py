"""Helpers for tests that run real processes over real loopback sockets."""
