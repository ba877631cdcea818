"""Notifiers: where an alarm goes. Each plugin module parses its `PLUGIN:ARGS` (pure) and
delivers a notification (I/O), raising NotifierError on failure."""
