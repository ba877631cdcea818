"""The HTTP API (aiohttp): logs, live follow, metrics, health; alarms add their routes."""
