"""The alarms' errors. Like every error of the collector process they are
CollectorErrors, so that its CLI, the one place errors become exit codes, handles them."""

from __future__ import annotations

from collector.errors import CollectorError


class AlarmError(CollectorError):
    """An alarm rule or notifier is unusable."""

    exit_code = 5


class NotifierError(AlarmError):
    """One delivery attempt failed; the outbox retries it unless it is `permanent`."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)
