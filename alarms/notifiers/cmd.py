"""`cmd:COMMAND`: run by /bin/sh -c with the message on standard input, as uWSGI does.

The message never touches the command line; the alarm's facts arrive as environment
variables (ALARM_NAME, ALARM_APP, ALARM_SOURCE, ALARM_CONDITION, ALARM_ID, ALARM_COUNT,
ALARM_SUPPRESSED; ALARM_STATUS, `firing` or `resolved` when the condition cleared;
ALARM_GROUP and ALARM_ALERT, the stable keys that a firing notification and its resolved
one share, ALARM_ALERT empty for a condition without a state). An environment cannot
carry a NUL byte, and a native sender may put one in its source name: a NUL in a value
arrives as the four characters `\\x00` (so `web\\x00.1` is that source), and text that
is not valid Unicode is backslash-escaped, as it is on standard input. A non-zero exit or
a timeout is a failed delivery, retried; a command that cannot even be started with these
values is a permanent failure.

A grouped notification (alarm-group-wait) also sets ALARM_MEMBERS (how many it carries);
its standard input lists each member's source, count and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from alarms.errors import NotifierError
from alarms.notification import Notification


def check(arg: str) -> str | None:
    """What is wrong with the argument, or None."""
    return None if arg.strip() else "cmd: needs a command"


def env_value(value: str) -> str:
    """`value` as an environment can carry it: NUL as the text `\\x00`, and what is not
    valid Unicode (lone surrogates) backslash-escaped."""
    value = value.replace("\0", "\\x00")
    try:
        value.encode()
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode()
    return value


class CmdNotifier:
    """Runs the command once per notification."""

    plugin = "cmd"

    def __init__(self, command: str, timeout: float) -> None:
        self._command = command
        self._timeout = timeout

    async def send(self, notification: Notification) -> str:
        """Run and wait; kill it at the timeout."""
        facts = {"ALARM_NAME": notification.alarm, "ALARM_APP": notification.app,
                 "ALARM_SOURCE": notification.source,
                 "ALARM_CONDITION": notification.condition, "ALARM_ID": notification.id,
                 "ALARM_COUNT": str(notification.count),
                 "ALARM_SUPPRESSED": str(notification.suppressed),
                 "ALARM_STATUS": notification.status, "ALARM_GROUP": notification.group,
                 "ALARM_ALERT": notification.alert}
        if notification.members:
            # Grouped (alarm-group-wait): standard input lists every member's message.
            facts["ALARM_MEMBERS"] = str(len(notification.members))
        env = {**os.environ, **{name: env_value(value) for name, value in facts.items()}}
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", self._command, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
                start_new_session=True)
        except OSError as exc:
            raise NotifierError(f"cannot run /bin/sh: {exc}") from None
        except (ValueError, UnicodeError) as exc:
            # The same values would be refused on every attempt: retrying cannot help.
            raise NotifierError(f"cannot pass the alarm to the command: {exc}",
                                permanent=True) from None
        try:
            _, stderr = await asyncio.wait_for(
                process.communicate(notification.text().encode("utf-8", "backslashreplace")),
                self._timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            await process.wait()
            raise NotifierError(f"timed out after {self._timeout:g} s") from None
        if process.returncode != 0:
            detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise NotifierError(f"exit {process.returncode}: {detail[0][:200]}")
        return "exit 0"
