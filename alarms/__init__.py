"""Alarms: uWSGI alarm options evaluated on the collector, delivered through a durable outbox."""
