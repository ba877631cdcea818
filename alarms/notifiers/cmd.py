"""`cmd:COMMAND`: run by /bin/sh -c with the message on standard input, as uWSGI does.

The message never touches the command line; the alarm's facts arrive as environment
variables (ALARM_NAME, ALARM_APP, ALARM_SOURCE, ALARM_CONDITION, ALARM_ID, ALARM_COUNT,
ALARM_SUPPRESSED). A non-zero exit or a timeout is a failed delivery, retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from alarms.notification import Notification
from collector.errors import NotifierError


def check(arg: str) -> str | None:
    """What is wrong with the argument, or None."""
    return None if arg.strip() else "cmd: needs a command"


class CmdNotifier:
    """Runs the command once per notification."""

    plugin = "cmd"

    def __init__(self, command: str, timeout: float) -> None:
        self._command = command
        self._timeout = timeout

    async def send(self, notification: Notification) -> str:
        """Run and wait; kill it at the timeout."""
        env = {**os.environ, "ALARM_NAME": notification.alarm, "ALARM_APP": notification.app,
               "ALARM_SOURCE": notification.source,
               "ALARM_CONDITION": notification.condition, "ALARM_ID": notification.id,
               "ALARM_COUNT": str(notification.count),
               "ALARM_SUPPRESSED": str(notification.suppressed)}
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", self._command, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
                start_new_session=True)
        except OSError as exc:
            raise NotifierError(f"cannot run /bin/sh: {exc}") from None
        try:
            _, stderr = await asyncio.wait_for(
                process.communicate(notification.text().encode()), self._timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            await process.wait()
            raise NotifierError(f"timed out after {self._timeout:g} s") from None
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise NotifierError(f"exit {process.returncode}: {detail[0][:200]}")
        return "exit 0"
