"""uWSGI-style ini reading: repeated keys, `;`/`#` comment lines, `$(ENV)` expansion.

Outside `[app:...]` sections, a `;` after white space also ends the value (`node = col-a
; the host name`, as configparser and systemd-style examples write it). `[app:...]` lines
are taken whole, as uWSGI takes them: an alarm's regex may hold ` ;`.

The reader keeps every entry's file and line so that later validation can name them.
It does not know which keys exist; `load.py` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.errors import ConfigError, Location

_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_ENV = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_INLINE_COMMENT = re.compile(r"\s;.*$")


@dataclass(frozen=True)
class Entry:
    """One `key = value` line, value already expanded."""

    key: str
    value: str
    location: Location


@dataclass
class Section:
    """A `[name]` block and its entries in file order."""

    name: str
    location: Location
    entries: list[Entry] = field(default_factory=list)


def expand_env(value: str, env: Mapping[str, str], location: Location) -> str:
    """Replace each `$(NAME)` with the environment's value; an unset name is an error.

    uWSGI leaves unset names empty, which for a secret would silently mean an empty key;
    a collector is better off refusing to start.
    """

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"environment variable {name} is not set", location)
        return env[name]

    return _ENV.sub(sub, value)


def parse_ini(text: str, filename: str, env: Mapping[str, str]) -> list[Section]:
    """Split ini text into sections of entries, in order, keeping repeated keys."""
    sections: list[Section] = []
    current: Section | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        header = _SECTION.match(line)
        if header:
            current = Section(header.group(1).strip(), Location(filename, number))
            sections.append(current)
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected 'key = value', got {raw.strip()!r}",
                              Location(filename, number))
        location = Location(filename, number, key)
        if current is None:
            raise ConfigError("key outside of any [section]", location)
        if not current.name.startswith("app:"):
            value = _INLINE_COMMENT.sub("", value)
        current.entries.append(Entry(key, expand_env(value.strip(), env, location), location))
    return sections
