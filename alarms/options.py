"""alarm_curl-style argument strings: `URL;key=value;key=value`.

As in plugins/alarm_curl: items are split on `;`; an item without `=` (or the first item
when no URL is known yet) is the URL; the rest are options. Pure; errors come back as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """A URL and its options."""

    url: str
    options: dict[str, str] = field(default_factory=dict)


def parse_target(arg: str, known: frozenset[str]) -> Target | str:
    """The target, or the text of what is wrong with it."""
    url = ""
    options: dict[str, str] = {}
    for item in (part.strip() for part in arg.split(";")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not url:
            if url:
                return f"two URLs given: {url!r} and {item!r}"
            url = item
            continue
        if name not in known:
            return f"unknown option {name!r}; known: {', '.join(sorted(known))}"
        options[name] = value
    if not url:
        return "a URL is required"
    return Target(url, options)


def seconds_error(options: dict[str, str], names: tuple[str, ...] = ("timeout", "conn_timeout")
                  ) -> str | None:
    """What is wrong with the options that give seconds (alarm_curl's timeouts), or None."""
    for name in names:
        value = options.get(name)
        if not value:
            continue
        try:
            seconds = float(value)
        except ValueError:
            return f"{name}: expected seconds, got {value!r}"
        if seconds <= 0:
            return f"{name}: must be more than 0 seconds, got {value!r}"
    return None
