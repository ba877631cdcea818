"""The dispatcher with the real outbox, real notifiers, and a real HTTP receiver on
loopback: retries with the same id, dead letters, lanes, restarts."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from alarms.delivery import Dispatcher
from alarms.errors import NotifierError
from alarms.notification import Notification, new_id
from alarms.notifiers.base import Notifier
from alarms.notifiers.cmd import CmdNotifier
from alarms.notifiers.webhook import WebhookNotifier
from alarms.outbox.sqlite import SqliteOutbox
from alarms.spec import RetryPolicy
from tests.unit.alarm_support import Receiver

FAST = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2, timeout=5.0, concurrency=1)


def fired(alarm: str = "hook", message: str = "GET / (HTTP/1.1 500)") -> Notification:
    """A notification for app `shop`."""
    return Notification(id=new_id(), alarm=alarm, plugin="webhook", app="shop",
                        source="web.1", condition="log", message=message, created_at=1.0)


async def settle(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait (bounded) until `check()` is true."""
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the dispatcher")
        await asyncio.sleep(0.01)


async def start(tmp_path: Path, notifiers: dict[tuple[str, str], Notifier]
                ) -> tuple[Dispatcher, SqliteOutbox]:
    """A dispatcher over a (re)opened outbox in tmp_path."""
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    pending = await outbox.open()
    dispatcher = Dispatcher(outbox, notifiers, {"shop": FAST})
    dispatcher.start(pending)
    return dispatcher, outbox


async def test_failures_are_retried_with_the_same_id_until_delivered(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Two 500s, then success: three attempts, one webhook-id, state delivered."""
    receiver.statuses = [500, 503]
    hook = WebhookNotifier(receiver.url, session, 5.0)
    dispatcher, outbox = await start(tmp_path, {("shop", "hook"): hook})
    notification = fired()
    dispatcher.submit(notification)
    await settle(lambda: dispatcher.figures.get(("shop", "hook")) is not None
                 and dispatcher.figures[("shop", "hook")].delivered == 1)
    assert receiver.ids == [notification.id] * 3
    (entry,) = await outbox.recent()
    assert (entry.state, entry.attempts, entry.outcome) == ("delivered", 3, "HTTP 204")
    assert entry.last_error == "HTTP 503"
    assert dispatcher.figures[("shop", "hook")].retried == 2
    await dispatcher.stop()
    await outbox.close()


async def test_permanent_failure_and_exhausted_retries_become_dead_letters(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A 410 is dead at once; 500s are dead after `attempts`; retry() sends them again."""
    receiver.statuses = [410, 500, 500, 500, 500]
    hook = WebhookNotifier(receiver.url, session, 5.0)
    dispatcher, outbox = await start(tmp_path, {("shop", "hook"): hook})
    gone, failing = fired(message="one"), fired(message="two")
    dispatcher.submit(gone)
    await settle(lambda: len(receiver.ids) == 1)
    dispatcher.submit(failing)
    await settle(lambda: dispatcher.figures[("shop", "hook")].dead == 2)
    dead = {e.id: e for e in await outbox.recent(state="dead")}
    assert dead[gone.id].attempts == 1
    assert dead[failing.id].attempts == FAST.attempts
    assert dispatcher.pending_counts() == {}
    retried = await dispatcher.retry(None)
    assert {e.id for e in retried} == {gone.id, failing.id}
    await settle(lambda: dispatcher.figures[("shop", "hook")].delivered == 2)
    assert {e.state for e in await outbox.recent()} == {"delivered"}
    await dispatcher.stop()
    await outbox.close()


async def test_a_slow_webhook_does_not_delay_another_alarm(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Each alarm has its own lane: a command alarm fired after a stuck webhook is
    delivered while the webhook is still waiting for its answer."""
    receiver.delay = 3.0
    out = tmp_path / "page.txt"
    notifiers: dict[tuple[str, str], Notifier] = {
        ("shop", "hook"): WebhookNotifier(receiver.url, session, 10.0),
        ("shop", "page"): CmdNotifier(f"cat > {out}", 5.0)}
    dispatcher, outbox = await start(tmp_path, notifiers)
    dispatcher.submit(fired("hook", "first"))
    await settle(lambda: len(receiver.ids) == 1)
    dispatcher.submit(fired("page", "second"))
    await settle(lambda: out.exists() and out.read_text() == "second")
    assert ("shop", "hook") not in dispatcher.figures or \
        dispatcher.figures[("shop", "hook")].delivered == 0
    await dispatcher.stop(grace=0.1)
    await outbox.close()


async def test_pending_alarms_survive_a_restart_and_go_out_once(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Submitted while the receiver is down, kept through a stop (even one that cuts the
    persister short), then delivered exactly once by a new dispatcher."""
    # Port 1 on loopback: nothing listens there, so every attempt is refused.
    first, outbox = await start(tmp_path, {
        ("shop", "hook"): WebhookNotifier("http://127.0.0.1:1/hook", session, 1.0)})
    items = [fired(message=f"m{i}") for i in range(5)]
    for item in items:
        first.submit(item)
    await first.stop(grace=2.0)
    await outbox.close()

    second, reopened = await start(tmp_path, {
        ("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    await settle(lambda: len(receiver.ids) == 5)
    await asyncio.sleep(0.3)  # nothing more arrives
    assert sorted(receiver.ids) == sorted(i.id for i in items)
    assert {e.state for e in await reopened.recent()} == {"delivered"}
    await second.stop()
    await reopened.close()


async def test_an_alarm_no_longer_configured_is_a_dead_letter(tmp_path: Path) -> None:
    """After a config change removed an alarm, its pending entries say so and stop."""
    dispatcher, outbox = await start(tmp_path, {})
    dispatcher.submit(fired("gone"))
    await settle(lambda: ("shop", "gone") in dispatcher.figures
                 and dispatcher.figures[("shop", "gone")].dead == 1)
    (entry,) = await outbox.recent(state="dead")
    assert "no longer configured" in (entry.last_error or "")
    await dispatcher.stop()
    await outbox.close()


async def test_cmd_gets_the_message_on_stdin_and_facts_in_its_environment(
        tmp_path: Path) -> None:
    """cmd: runs /bin/sh -c COMMAND; the message is stdin, never part of the command line,
    so shell syntax in a log line is inert."""
    out = tmp_path / "out.json"
    canary = tmp_path / "canary"
    script = (f"{sys.executable} -c 'import json,os,sys; json.dump({{\"stdin\": "
              f"sys.stdin.read(), \"env\": {{k: v for k, v in os.environ.items() "
              f"if k.startswith(\"ALARM_\")}}}}, open(\"{out}\", \"w\"))'")
    notifier = CmdNotifier(script, 5.0)
    message = f"boom $(touch {canary}); touch {canary} `touch {canary}`"
    notification = fired("page", message)
    notification.suppressed = 2
    assert await notifier.send(notification) == "exit 0"
    got = json.loads(out.read_text())
    assert got["stdin"] == notification.text()
    assert got["stdin"].startswith(message)
    assert not canary.exists()
    env = got["env"]
    assert (env["ALARM_NAME"], env["ALARM_APP"], env["ALARM_SOURCE"],
            env["ALARM_CONDITION"], env["ALARM_ID"], env["ALARM_SUPPRESSED"]) == (
        "page", "shop", "web.1", "log", notification.id, "2")


async def test_cmd_failures_carry_exit_code_and_timeouts_kill_the_group(
        tmp_path: Path) -> None:
    """A non-zero exit is a failure naming the code and the last stderr line; a command
    that outlives its timeout is killed with its children."""
    with pytest.raises(NotifierError, match="exit 3: nope"):
        await CmdNotifier("echo nope >&2; exit 3", 5.0).send(fired("page"))
    marker = tmp_path / "late"
    with pytest.raises(NotifierError, match="timed out"):
        await CmdNotifier(f"sleep 1.5 && touch {marker}", 0.3).send(fired("page"))
    await asyncio.sleep(1.8)
    assert not marker.exists()


async def test_a_nul_in_the_source_name_is_delivered_by_cmd_at_the_first_attempt(
        tmp_path: Path) -> None:
    """A native sender may name its source with a NUL byte, which no environment can
    carry: the command still runs once, with the NUL spelled `\\x00` in ALARM_SOURCE and
    the message (NUL included) intact on stdin; nothing is retried."""
    out = tmp_path / "out.json"
    script = (f"{sys.executable} -c 'import json,os,sys; json.dump({{\"stdin\": "
              f"sys.stdin.read(), \"source\": os.environ[\"ALARM_SOURCE\"]}}, "
              f"open(\"{out}\", \"w\"))'")
    dispatcher, outbox = await start(tmp_path, {("shop", "page"): CmdNotifier(script, 5.0)})
    notification = fired("page", "boom\x00bang")
    notification.source = "web\x00.1"
    dispatcher.submit(notification)
    await settle(lambda: ("shop", "page") in dispatcher.figures
                 and dispatcher.figures[("shop", "page")].delivered
                 + dispatcher.figures[("shop", "page")].retried > 0)
    (entry,) = await outbox.recent()
    assert (entry.state, entry.attempts, entry.last_error) == ("delivered", 1, None)
    got = json.loads(out.read_text())
    assert got == {"stdin": "boom\x00bang", "source": "web\\x00.1"}
    await dispatcher.stop()
    await outbox.close()


def failing_once_in(task_name: str, failures: list[str]) -> Callable[[], float]:
    """A clock that raises once, when it is first read by the dispatcher task named
    `task_name` after a notification was submitted: an unexpected bug in that task."""
    armed = [False]

    def clock() -> float:
        task = asyncio.current_task()
        if armed[0] and task is not None and task.get_name() == task_name:
            armed[0] = False
            failures.append(task_name)
            raise RuntimeError(f"injected fault in {task_name}")
        return time.time()

    clock.arm = lambda: armed.__setitem__(0, True)  # type: ignore[attr-defined]
    return clock


@pytest.mark.parametrize("task_name", ["alarm-persister", "alarm-scheduler"])
async def test_an_unexpected_error_in_the_persister_or_scheduler_does_not_end_delivery(
        task_name: str, tmp_path: Path, receiver: Receiver,
        session: aiohttp.ClientSession) -> None:
    """An exception the persister or the scheduler did not expect is caught at that task's
    one catch point, logged once and counted; the alarm it was handling and the ones after
    it are still delivered, each once."""
    failures: list[str] = []
    clock = failing_once_in(task_name, failures)
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    dispatcher = Dispatcher(outbox, {("shop", "hook"): WebhookNotifier(
        receiver.url, session, 5.0)}, {"shop": FAST}, clock=clock)
    dispatcher.start(await outbox.open())
    await asyncio.sleep(0.05)
    clock.arm()  # type: ignore[attr-defined]
    with capture_logs() as logs:
        first = fired(message="first")
        dispatcher.submit(first)
        await settle(lambda: len(receiver.ids) == 1)
        second = fired(message="second")
        dispatcher.submit(second)
        await settle(lambda: len(receiver.ids) == 2)
    assert failures == [task_name]
    assert receiver.ids == [first.id, second.id]
    task = task_name.removeprefix("alarm-")
    assert dispatcher.task_errors == {task: 1}
    assert [e["task"] for e in logs if e["event"] == "alarm_task_failed"] == [task]
    await dispatcher.stop()
    await outbox.close()


async def test_a_notification_that_can_never_be_written_does_not_hold_up_the_others(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A notification the outbox cannot take even alone (here: facts that are not JSON)
    is dropped, named in the log and counted; those queued with it are written one by one
    and delivered."""
    dispatcher, outbox = await start(tmp_path, {("shop", "hook"): WebhookNotifier(
        receiver.url, session, 5.0)})
    good = [fired(message=f"m{i}") for i in range(3)]
    poison = fired(message="poison")
    poison.facts = {"raw": b"\x00"}
    with capture_logs() as logs:
        for notification in (good[0], poison, *good[1:]):
            dispatcher.submit(notification)
        await settle(lambda: len(receiver.ids) == 3)
        await settle(lambda: dispatcher.errors["outbox_unwritable"] == 1)
    assert sorted(receiver.ids) == sorted(n.id for n in good)
    dropped = [e for e in logs if e["event"] == "alarm_task_failed" and "dropped" in e]
    assert [e["dropped"] for e in dropped] == [poison.id]
    assert dispatcher.task_errors["persister"] == 2  # the batch, then it alone
    await dispatcher.stop()
    await outbox.close()


async def test_intake_is_idle_once_what_was_submitted_is_in_the_outbox(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """`intake_idle` (what the cluster's floor waits for) is false from `submit` until
    the outbox holds the notification."""
    hook = WebhookNotifier(receiver.url, session, 5.0)
    dispatcher, outbox = await start(tmp_path, {("shop", "hook"): hook})
    idle_before = dispatcher.intake_idle
    notification = fired()
    dispatcher.submit(notification)
    assert (idle_before, dispatcher.intake_idle) == (True, False)
    await settle(lambda: dispatcher.intake_idle)
    assert [e.id for e in await outbox.recent()] == [notification.id]
    await dispatcher.stop()
    await outbox.close()


async def test_resumed_entries_are_delivered_once_each(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Entries made pending elsewhere (another node's retry) are scheduled by `resume`;
    one already scheduled here is not scheduled twice."""
    hook = WebhookNotifier(receiver.url, session, 5.0)
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    await outbox.open()
    first, second = fired(message="one"), fired(message="two")
    await outbox.add([first, second], time.time())
    entries = await outbox.recent()
    dispatcher = Dispatcher(outbox, {("shop", "hook"): hook}, {"shop": FAST})
    dispatcher.start([])
    dispatcher.resume(entries)
    dispatcher.resume(entries)
    await settle(lambda: dispatcher.figures.get(("shop", "hook")) is not None
                 and dispatcher.figures[("shop", "hook")].delivered == 2)
    await asyncio.sleep(0.2)  # a second schedule of either would have gone out by now
    assert sorted(receiver.ids) == sorted([first.id, second.id])
    await dispatcher.stop()
    await outbox.close()
