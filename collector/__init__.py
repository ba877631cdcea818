"""The collector: receives uWSGI logs over UDP, keeps them, streams them, raises alarms."""

__version__ = "0.1.0"
