"""Registers the alarms package with the collector (config validation, server component,
CLI commands). Imported by `collector.cli`."""
