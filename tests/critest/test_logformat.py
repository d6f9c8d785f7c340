"""The CRI log parser the log cases use."""

from __future__ import annotations

import pytest

from critest.logformat import LogFormatError, messages, parse_line, parse_log


def test_a_full_line() -> None:
    entry = parse_line(b"2016-10-06T00:17:09.669794202Z stdout F hello world")
    assert (entry.stream, entry.partial, entry.content) == ("stdout", False, b"hello world")
    assert entry.nanos == 669794202
    assert entry.timestamp.year == 2016


def test_offsets_and_short_fractions() -> None:
    entry = parse_line(b"2024-01-02T03:04:05.5+02:00 stderr P x")
    assert (entry.nanos, entry.partial, entry.stream) == (500000000, True, "stderr")


@pytest.mark.parametrize(
    "raw",
    [
        b"hello",
        b"2016-10-06 stdout F x",
        b"2016-10-06T00:17:09Z stdin F x",
        b"2016-10-06T00:17:09Z stdout X x",
    ],
)
def test_bad_lines(raw: bytes) -> None:
    with pytest.raises(LogFormatError):
        parse_line(raw)


def test_partials_join_per_stream_and_a_trailing_partial_counts() -> None:
    data = (
        b"2024-01-01T00:00:00.1Z stdout P ab\n"
        b"2024-01-01T00:00:00.2Z stderr F err\n"
        b"2024-01-01T00:00:00.3Z stdout F cd\n"
        b"2024-01-01T00:00:00.4Z stdout P tail\n"
        b"2024-01-01T00:00:00.5Z stdout F incomplete-line-being-writ"
    )
    entries = parse_log(data)
    assert len(entries) == 4  # the last line has no newline yet
    assert messages(entries, "stdout") == [b"abcd", b"tail"]
    assert messages(entries, "stderr") == [b"err"]
