"""Conditions: pure recognisers of the uWSGI lines and patterns that raise alarms."""
