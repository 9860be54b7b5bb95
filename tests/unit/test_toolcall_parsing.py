"""Tool-call parsing: one-shot results, streaming behaviour, and streaming == one-shot for any split."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from hearth.rendering.toolcalls import (
    CallArgs,
    CallStart,
    Event,
    TextEvent,
    ToolCallParser,
    merge_events,
    parse_all,
    profile_for_template,
)

NAMES = frozenset({"get_weather", "search", "f"})

Call = tuple[str, str]
Case = tuple[str, str, str | None, list[Call]]


def tc(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


def as_text(profile: str, output: str) -> Case:
    """A case whose whole output must come back as content, with no calls."""
    return profile, output, output, []


W_ARGS = '{"city": "Paris", "unit": "c"}'
WEATHER = '{"name": "get_weather", "arguments": ' + W_ARGS + "}"
W_CALL = ("get_weather", W_ARGS)
NESTED = '{"q": "a {b} [c] \\"quoted\\" \\\\", "deep": {"x": [1, {"y": "}"}], "z": -1.5e3}, "t": true}'
STRING_ARGS = '{"name": "f", "arguments": "{\\"a\\": [1, \\"}\\"]}"}'
LIST_REPLY = '[{"name": "f", "arguments": {}}, {"name": "search", "arguments": "{\\"q\\": 1}"}]'

# (profile, output, expected content, expected calls)
CASES: list[Case] = [
    ("hermes", tc(WEATHER), None, [W_CALL]),
    (
        "hermes",
        tc(WEATHER) + "\n" + tc('{"name": "search", "arguments": {"q": "rain"}}'),
        None,
        [W_CALL, ("search", '{"q": "rain"}')],
    ),
    ("hermes", "Let me look that up.\n\n" + tc(WEATHER), "Let me look that up.\n\n", [W_CALL]),
    # The model stopped without the close tag.
    ("hermes", "<tool_call>\n" + WEATHER, None, [W_CALL]),
    ("hermes", "<tool_call>\n" + WEATHER + "\n", None, [W_CALL]),
    # Unknown tool: the block is plain text.
    as_text("hermes", tc('{"name": "rm_rf", "arguments": {}}')),
    # Malformed JSON before the call could be announced: plain text.
    as_text("hermes", tc("{name: get_weather}")),
    as_text("hermes", tc('{"name": "f" "arguments": {}}')),
    as_text("hermes", tc("not json at all")),
    as_text("hermes", tc('{"name": "f", "arguments": [1]}')),
    as_text("hermes", '<tool_call>\n{"arguments": {"a": 1}, "name": "f"\n</tool_call>'),
    as_text("hermes", '<tool_call>\n{"arguments": {"a": 1}, "name": "f"'),
    # Arguments as a JSON string holding JSON: decoded once.
    ("hermes", tc(STRING_ARGS), None, [("f", '{"a": [1, "}"]}')]),
    # Arguments before the name: buffered, then one CallArgs.
    ("hermes", tc('{"arguments": {"q": "x"}, "name": "search"}'), None, [("search", '{"q": "x"}')]),
    ("hermes", tc('{"name": "f"}'), None, [("f", "{}")]),
    ("hermes", tc('{"name": "f", "parameters": {"k": null}}'), None, [("f", '{"k": null}')]),
    # Braces, brackets, escaped quotes and backslashes inside strings.
    ("hermes", tc('{"name": "search", "arguments": ' + NESTED + "}"), None, [("search", NESTED)]),
    # Extra members after the arguments are skipped.
    ("hermes", tc('{"name": "f", "arguments": {"a": 1}, "id": "x}"}'), None, [("f", '{"a": 1}')]),
    # Committed calls with broken arguments are repaired, the rest of the block dropped.
    ("hermes", tc('{"name": "f", "arguments": {"a": 1,, "b": 2}}') + " ok", " ok", [("f", '{"a": 1}')]),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": "tru', None, [("f", '{"a": "tru"}')]),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": [1, 2', None, [("f", '{"a": [1, 2]}')]),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>', None, [("f", '{"a": 1}')]),
    # Raw newlines in a string are escaped so the arguments stay strict JSON.
    ("hermes", tc('{"name": "f", "arguments": {"code": "a\nb"}}'), None, [("f", '{"code": "a\\nb"}')]),
    # Whole-reply JSON forms, in both profiles.
    ("json", "```json\n" + WEATHER + "\n```", None, [W_CALL]),
    ("hermes", "\n```json\n" + WEATHER + "\n```\n", None, [W_CALL]),
    ("json", "  " + WEATHER + "\n", None, [W_CALL]),
    ("hermes", WEATHER, None, [W_CALL]),
    ("json", LIST_REPLY, None, [("f", "{}"), ("search", '{"q": 1}')]),
    ("hermes", "```\n" + LIST_REPLY + "```", None, [("f", "{}"), ("search", '{"q": 1}')]),
    # Not the whole-reply form: text.
    as_text("json", WEATHER + " and more"),
    as_text("json", '{"name": "nope", "arguments": {}}'),
    as_text("json", '{"answer": 42}'),
    as_text("json", '[{"name": "f"}, {"name": "nope"}]'),
    as_text("json", "```python\nprint({1: 2})\n```"),
    as_text("json", "```json\n" + WEATHER + "\n``` trailing"),
    as_text("json", "Use " + WEATHER),
    as_text("json", tc(WEATHER)),
    ("hermes", WEATHER + "\n" + tc('{"name": "f", "arguments": {}}'), WEATHER + "\n", [("f", "{}")]),
    # Plain text, including near-misses of the tag.
    as_text("hermes", "a < b and <tool or <tool_cal>"),
    as_text("hermes", "ends with <tool_ca"),
    ("hermes", "   \n", None, []),
    ("hermes", "", None, []),
]


def _collect(parser: ToolCallParser, chunks: list[str]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.finish()


def _random_split(text: str, rng: random.Random) -> list[str]:
    chunks, i = [], 0
    while i < len(text):
        step = rng.choice((1, 1, 2, 3, 5, 8, 13))
        chunks.append(text[i : i + step])
        i += step
    return chunks


def _check_structure(events: list[Event]) -> None:
    """Guarantee (b): CallStart, then only its CallArgs, concatenating to a JSON object."""
    next_index, current = 0, -1
    args: dict[int, str] = {}
    for event in events:
        if isinstance(event, CallStart):
            assert event.index == next_index
            current, next_index = event.index, next_index + 1
            args[current] = ""
        elif isinstance(event, CallArgs):
            assert event.index == current
            args[current] += event.fragment
        else:
            current = -1
    for text in args.values():
        assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize(("profile", "output", "content", "calls"), CASES)
def test_one_shot(profile: str, output: str, content: str | None, calls: list[tuple[str, str]]) -> None:
    assert parse_all(output, NAMES, profile) == (content, calls)


@pytest.mark.parametrize(("profile", "output", "content", "calls"), CASES)
def test_any_split_gives_the_one_shot_result(
    profile: str, output: str, content: str | None, calls: list[tuple[str, str]]
) -> None:
    whole = merge_events(_collect(ToolCallParser(NAMES, profile), [output]))
    _check_structure(whole)
    rng = random.Random(zlib.crc32(f"{profile}:{output}".encode()))
    splits = [list(output), *(_random_split(output, rng) for _ in range(40))]
    for chunks in splits:
        events = _collect(ToolCallParser(NAMES, profile), chunks)
        _check_structure(events)
        assert merge_events(events) == whole, chunks


def test_random_splits_of_concatenated_cases() -> None:
    """Mixtures of the cases above (text, calls, broken blocks) in one output."""
    rng = random.Random(1234)
    hermes = [output for profile, output, _, _ in CASES if profile == "hermes"]
    for _ in range(150):
        output = "".join(rng.sample(hermes, rng.randint(2, 4)))
        whole = merge_events(_collect(ToolCallParser(NAMES, "hermes"), [output]))
        _check_structure(whole)
        events = _collect(ToolCallParser(NAMES, "hermes"), _random_split(output, rng))
        _check_structure(events)
        assert merge_events(events) == whole, output


def test_plain_text_streams_immediately_holding_back_only_a_possible_tag() -> None:
    parser = ToolCallParser(NAMES, "hermes")
    emitted = [parser.feed(ch) for ch in "a < b"]
    texts = ["".join(e.text for e in events if isinstance(e, TextEvent)) for events in emitted]
    # "<" might begin "<tool_call>"; once " " follows it cannot, and it is released.
    assert texts == ["a", " ", "", "< ", "b"]
    assert parser.finish() == []


def test_partial_tag_is_released_at_the_end() -> None:
    parser = ToolCallParser(NAMES, "hermes")
    assert parser.feed("x <tool_") == [TextEvent("x ")]
    assert parser.finish() == [TextEvent("<tool_")]


def test_text_before_a_call_is_not_held() -> None:
    parser = ToolCallParser(NAMES, "hermes")
    assert parser.feed("Checking the weather.\n") == [TextEvent("Checking the weather.\n")]
    assert parser.feed("<tool_call>\n{") == []


def test_call_start_and_arguments_stream_before_the_object_closes() -> None:
    parser = ToolCallParser(NAMES, "hermes")
    events: list[Event] = []
    output = tc('{"name": "search", "arguments": {"q": "long query text", "n": 10}}')
    closing = output.index("}}")
    for ch in output[:closing]:
        events += parser.feed(ch)
    assert events[0] == CallStart(0, "search")
    streamed = "".join(e.fragment for e in events if isinstance(e, CallArgs))
    # Only the number, which may still grow, is held back.
    assert streamed == '{"q": "long query text"'
    rest = parser.feed(output[closing:]) + parser.finish()
    tail = "".join(e.fragment for e in rest if isinstance(e, CallArgs))
    assert streamed + tail == '{"q": "long query text", "n": 10}'


def test_call_start_as_soon_as_the_arguments_begin() -> None:
    parser = ToolCallParser(NAMES, "hermes")
    assert parser.feed('<tool_call>\n{"name": "f", "arguments": ') == []
    assert parser.feed("{") == [CallStart(0, "f"), CallArgs(0, "{")]


def test_whitespace_between_calls_is_not_content() -> None:
    output = tc(WEATHER) + "\n\n" + tc('{"name": "f", "arguments": {}}') + "\n"
    events = merge_events(_collect(ToolCallParser(NAMES, "hermes"), list(output)))
    assert not any(isinstance(e, TextEvent) for e in events)


def test_unknown_tool_text_is_released_once_the_name_is_read() -> None:
    parser = ToolCallParser(NAMES, "hermes")
    assert parser.feed('<tool_call>\n{"name": "nope"') == [TextEvent('<tool_call>\n{"name": "nope"')]


def test_json_profile_releases_non_json_text_at_once() -> None:
    parser = ToolCallParser(NAMES, "json")
    assert parser.feed("Hello <tool_call>") == [TextEvent("Hello <tool_call>")]


def test_bare_json_is_held_until_the_end_of_output() -> None:
    parser = ToolCallParser(NAMES, "json")
    assert parser.feed(WEATHER) == []
    events = parser.finish()
    assert events == [CallStart(0, "get_weather"), CallArgs(0, '{"city": "Paris", "unit": "c"}')]


def test_no_known_tools_means_no_calls() -> None:
    assert parse_all(tc(WEATHER), frozenset(), "hermes") == (tc(WEATHER), [])


def test_feed_after_finish_is_a_programming_error() -> None:
    parser = ToolCallParser(NAMES)
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError, match="profile"):
        ToolCallParser(NAMES, "mistral")


def test_profile_for_template() -> None:
    qwen = '{%- if tools %}...<tool_call>\\n{"name": <function-name>, ...}\\n</tool_call>{% endif %}'
    assert profile_for_template(qwen) == "hermes"
    assert profile_for_template("{{ messages[0]['content'] }}") == "json"
    assert profile_for_template(None) == "json"
    assert profile_for_template("") == "json"


def test_deeply_nested_or_garbage_output_never_raises() -> None:
    rng = random.Random(7)
    alphabet = ["{", "}", "[", "]", '"', "\\", ":", ",", " ", "a", "1", "\n"]
    alphabet += ["<tool_call>", "</tool_call>", '"name"', '"f"', '"arguments"', "```"]
    for _ in range(300):
        output = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        for profile in ("hermes", "json"):
            whole = merge_events(_collect(ToolCallParser(NAMES, profile), [output]))
            _check_structure(whole)
            if not any(isinstance(e, CallStart) for e in whole):
                # Nothing is lost: output without calls comes back verbatim as text.
                assert "".join(e.text for e in whole if isinstance(e, TextEvent)) == output
            assert merge_events(_collect(ToolCallParser(NAMES, profile), list(output))) == whole
    deep = tc('{"name": "f", "arguments": ' + "[" * 5000 + "]" * 5000 + "}")
    assert parse_all(deep, NAMES)[1] == []
    deep_ok = tc('{"name": "f", "arguments": {"a": ' + "[" * 5000 + "]" * 5000 + "}}")
    assert parse_all(deep_ok, NAMES)[1] == [("f", '{"a": ' + "[" * 5000 + "]" * 5000 + "}")]
