"""The dyno side: uWSGI config lines, the native-format sidecar, keys and load generation."""
