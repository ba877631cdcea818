"""The RFC 6587 framer, byte-fed: both framings chosen from the first byte, bounds,
errors of the connection, a frame cut by the peer's close; and fuzzing that any split of
the stream gives the same frames and the same drops."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode.framing import Framed, Framer


def run(chunks: list[bytes], max_frame: int = 100) -> tuple[list[bytes], dict[str, int],
                                                            str | None]:
    """Feed chunks then close; every frame, drop and the error, summed."""
    framer = Framer(max_frame)
    frames: list[bytes] = []
    dropped: dict[str, int] = {}
    error = None
    for out in [*(framer.feed(c) for c in chunks), framer.close()]:
        assert isinstance(out, Framed)
        frames += out.frames
        for reason, count in out.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        error = error or out.error
        assert framer.buffered <= max_frame + 11
    return frames, dropped, error


def test_octet_counting() -> None:
    """`LEN SP MSG`, frames may hold LF; the mode comes from the first byte."""
    assert run([b"5 hello10 two\nlines!"]) == ([b"hello", b"two\nlines!"], {}, None)


def test_lf_framing_drops_cr_and_empty_lines() -> None:
    """Non-transparent framing: LF ends a frame, a CR before it goes, blank lines are no
    frames."""
    assert run([b"<13>a\r\n\n<13>b\n"]) == ([b"<13>a", b"<13>b"], {}, None)


def test_oversize_octet_frame_is_skipped_and_the_connection_goes_on() -> None:
    """A frame announced longer than max-frame is counted and skipped as it arrives."""
    assert run([b"150 " + b"x" * 100, b"x" * 50 + b"2 ok"]) == (
        [b"ok"], {"oversize_frame": 1}, None)


def test_oversize_lf_frame_is_dropped_to_its_lf() -> None:
    """An LF frame longer than max-frame is dropped up to its LF; the next one is kept."""
    assert run([b"y" * 150, b"y" * 10 + b"\n<1>ok\n"]) == (
        [b"<1>ok"], {"oversize_frame": 1}, None)


def test_bad_length_prefix_is_an_error_of_the_connection() -> None:
    """Letters, a leading zero or more than 10 digits: the stream cannot be split, so
    nothing more comes out of it."""
    for stream in (b"5 hello x ", b"05 hello", b"12345678901 x", b"5 hello\n5 abcde"):
        frames, _, error = run([stream])
        assert error == "bad_length", stream
        assert frames in ([], [b"hello"])


def test_close_mid_frame_loses_only_that_frame() -> None:
    """A peer that leaves mid-frame: earlier frames are kept, the cut one is counted."""
    assert run([b"5 hello9 cut"]) == ([b"hello"], {"truncated_frame": 1}, None)
    assert run([b"<1>a\n<1>cu"]) == ([b"<1>a"], {"truncated_frame": 1}, None)


_MESSAGE = st.binary(min_size=1, max_size=140)


def _octet_stream(messages: list[bytes]) -> bytes:
    return b"".join(b"%d %s" % (len(m), m) for m in messages)


def _lf_stream(messages: list[bytes]) -> bytes:
    return b"".join(b"<" + m.replace(b"\n", b"") + b">\n" for m in messages)


@st.composite
def _split(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    edges = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(_MESSAGE, min_size=1, max_size=8), octet=st.booleans(),
       data=st.data(), tail=st.binary(max_size=20))
def test_fuzz_any_split_gives_the_same_frames(messages: list[bytes], octet: bool,
                                              data: st.DataObject, tail: bytes) -> None:
    """Whatever the reads, the frames, drops and error are those of the whole stream;
    followed by garbage, the frames before it still come out."""
    stream = (_octet_stream if octet else _lf_stream)(messages) + tail
    whole = run([stream])
    chunks = data.draw(_split(stream))
    assert run(chunks) == whole
    assert run([stream[i:i + 1] for i in range(len(stream))]) == whole
    kept = [m for m in messages if len(m) <= 100] if octet else [
        b"<" + m.replace(b"\n", b"") + b">" for m in messages
        if len(m.replace(b"\n", b"")) + 2 <= 100]
    assert whole[0][:len(kept)] == kept
