from __future__ import annotations

import pytest

from hearth.engine.textstream import TextAssembler


def feed_all(a: TextAssembler, pieces: list[bytes]) -> list[str]:
    return [a.feed(p) for p in pieces]


def test_plain_text_passes_through() -> None:
    a = TextAssembler()
    assert feed_all(a, [b"Hello", b" world"]) == ["Hello", " world"]
    assert a.flush() == ""
    assert not a.stopped


@pytest.mark.parametrize("text", ["é", "€", "😀", "日本語", "a😀b"])
def test_multibyte_split_at_every_byte(text: str) -> None:
    data = text.encode()
    a = TextAssembler()
    out = []
    for i in range(len(data)):
        piece = a.feed(data[i:i + 1])
        # Only whole characters come out.
        piece.encode("utf-8")
        assert "\ufffd" not in piece
        out.append(piece)
    out.append(a.flush())
    assert "".join(out) == text


def test_partial_character_held_until_complete() -> None:
    euro = "€".encode()  # 3 bytes
    a = TextAssembler()
    assert a.feed(b"x" + euro[:1]) == "x"
    assert a.feed(euro[1:2]) == ""
    assert a.feed(euro[2:] + b"y") == "€y"


def test_incomplete_character_at_end_is_replaced_on_flush() -> None:
    a = TextAssembler()
    assert a.feed(b"ok" + "😀".encode()[:2]) == "ok"
    assert a.flush() == "\ufffd"


def test_stop_string_in_one_feed() -> None:
    a = TextAssembler(("END",))
    assert a.feed(b"abc END def") == "abc "
    assert a.stopped
    assert a.feed(b"more") == ""
    assert a.flush() == ""


def test_stop_string_spanning_feeds() -> None:
    a = TextAssembler(("beta gam",))
    out = feed_all(a, [b"alpha", b" beta", b" gamma", b" delta"])
    assert out == ["alpha", " ", "", ""]
    assert a.stopped
    assert "".join(out) == "alpha "


def test_stop_string_split_byte_by_byte() -> None:
    a = TextAssembler(("</s>",))
    out = feed_all(a, [c.encode() for c in "hi </s> there"])
    assert "".join(out) == "hi "
    for piece in out:
        assert "<" not in piece and "/" not in piece
    assert a.stopped


def test_stop_string_with_multibyte_split() -> None:
    stop = "—end"
    data = ("text" + stop + "tail").encode()
    a = TextAssembler((stop,))
    out = [a.feed(data[i:i + 1]) for i in range(len(data))]
    assert "".join(out) == "text"
    assert a.stopped


def test_earliest_stop_wins() -> None:
    a = TextAssembler(("world", "lo w", "o"))
    assert a.feed(b"hello world") == "hel"
    assert a.stopped


def test_earliest_stop_wins_across_feeds() -> None:
    # "cd" completes first in time but "bcd" starts earlier: text before the earliest start is kept.
    a = TextAssembler(("cd", "bcdx"))
    out = feed_all(a, [b"ab", b"c", b"d"])
    assert "".join(out) == "ab"
    assert a.stopped


def test_held_prefix_released_when_it_does_not_match() -> None:
    a = TextAssembler(("STOP",))
    assert a.feed(b"a ST") == "a "
    assert a.feed(b"AR") == "STAR"
    assert not a.stopped


def test_flush_releases_held_prefix() -> None:
    a = TextAssembler(("STOP",))
    assert a.feed(b"go ST") == "go "
    assert a.flush() == "ST"
    assert not a.stopped
    assert a.flush() == ""


def test_nothing_after_stop() -> None:
    a = TextAssembler(("x",))
    assert a.feed(b"abxcd") == "ab"
    assert a.feed(b"efg") == ""
    assert a.flush() == ""
    assert a.stopped


def test_empty_stop_strings_ignored() -> None:
    a = TextAssembler(("",))
    assert a.feed(b"abc") == "abc"
    assert not a.stopped


def test_stop_at_very_start() -> None:
    a = TextAssembler(("ab",))
    assert a.feed(b"a") == ""
    assert a.feed(b"b") == ""
    assert a.stopped
    assert a.flush() == ""


def test_longest_overlapping_prefix_held() -> None:
    # "aab" ends with "a" and "aa"; "aaa..." must hold only what could still start the stop string.
    a = TextAssembler(("aab",))
    assert a.feed(b"xaa") == "x"
    assert a.feed(b"a") == "a"  # "aaa": the first "a" can no longer start "aab"
    assert a.feed(b"b") == ""
    assert a.stopped
