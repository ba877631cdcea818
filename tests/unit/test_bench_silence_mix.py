"""The alarms benchmark's silences (bench/silence_mix.py): valid API bodies that hold back
only the HARAKIRI rare line, never a probe or another line the traffic alarms on."""

from __future__ import annotations

from alarms.notification import Notification, new_id
from alarms.silences import Silence, first_match, parse_body
from bench.sender import RARE_LINES
from bench.silence_mix import HOLDING, silence_bodies
from shipper.loadgen import make_lines

NOW = 1_800_000_000.0


def silences(count: int) -> list[Silence]:
    """The mix as `POST /v1/silences` would make it (each body must be accepted)."""
    made = [parse_body(body, NOW) for body in silence_bodies(count)]
    assert all(isinstance(s, Silence) for s in made), made
    return [s for s in made if isinstance(s, Silence)]


def note(alarm: str, source: str, message: str, condition: str = "log") -> Notification:
    """A notification of app bench."""
    return Notification(id=new_id(), alarm=alarm, plugin="webhook", app="bench",
                        source=source, condition=condition, message=message,
                        created_at=NOW)


def test_the_mix_has_the_count_asked_and_varied_matchers() -> None:
    """`count` bodies, the holding ones last, and among the others every kind of matcher."""
    bodies = silence_bodies(1000)
    assert len(bodies) == 1000
    assert all("HARAKIRI" in body.get("match", "") for body in bodies[-HOLDING:])
    for name in ("alarm", "condition", "source", "match"):
        assert any(name in body for body in bodies[:-HOLDING]), name
    assert all("source" in body or "match" in body for body in bodies)
    assert len(silence_bodies(2)) == 2


def test_only_the_harakiri_line_is_held() -> None:
    """The rare lines alarm through hook and ops: only HARAKIRI (from web.1, alarm hook)
    is held, by the first holding silence; probes and ordinary lines are not."""
    made = silences(1000)
    for template in RARE_LINES:
        line = template.format(seq=2501)
        for alarm in ("hook", "ops"):
            held = first_match(made, note(alarm, "web.1", line), NOW)
            if "HARAKIRI" in line and alarm == "hook":
                assert held is made[-HOLDING], line
            else:
                assert held is None, (alarm, line)
    assert first_match(made, note("probe", "web.2", "alarm-probe seq=7 sent=1.5"),
                       NOW) is None
    for raw in make_lines(300):
        for condition in ("log", "segfault", "backlog", "rate"):
            assert first_match(made, note("hook", "web.1", raw.decode(), condition),
                               NOW) is None
