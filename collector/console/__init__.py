"""The web console: static pages served by the collector on the API's address."""
