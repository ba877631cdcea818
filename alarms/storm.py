"""alarm-freq: uWSGI's anti-storm, plus a count of what it held back.

uWSGI (core/alarm.c, uwsgi_alarm_run) skips a message for an alarm instance when it equals
the last message sent to that instance and less than alarm-freq seconds have passed since
that send. The collector does the same per (app, alarm, source), and counts the skipped
messages so the next notification of that alarm can say how many there were.
"""

from __future__ import annotations


class Storm:
    """The anti-storm state of one alarm instance."""

    __slots__ = ("_last_key", "_last_run", "suppressed")

    def __init__(self) -> None:
        self._last_key: str | None = None
        self._last_run = float("-inf")
        self.suppressed = 0

    def forget(self, key: str) -> None:
        """The condition that sent `key` was told resolved: its next message is a new
        episode's first, not a repeat to hold back."""
        if self._last_key == key:
            self._last_key = None

    def admit(self, key: str, now: float, freq: float, *, sliding: bool = False) -> int | None:
        """None to suppress; otherwise the count of messages suppressed since the last send.

        With `sliding`, a suppressed repeat also moves the window, so a condition that keeps
        repeating is sent once until it has been quiet for `freq` seconds.
        """
        if key == self._last_key and now - self._last_run < freq:
            self.suppressed += 1
            if sliding:
                self._last_run = now
            return None
        held, self.suppressed = self.suppressed, 0
        self._last_key = key
        self._last_run = now
        return held
