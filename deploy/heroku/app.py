"""The app: replace with yours (Flask, Django: point `module` in uwsgi.ini at it)."""


def application(environ, start_response):
    """Answer every request with a short text."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from uWSGI on Heroku\n"]
