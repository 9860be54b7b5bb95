"""Shaping one choice's generated text into OpenAI's message or stream deltas (content, tool calls).

Streaming and non-streaming share this code path: a non-streamed choice is the same text fed in
one piece, so both give the same calls, ids aside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.engine.types import FinishReason
from hearth.protocol import chat as wire
from hearth.rendering.toolcalls import CallArgs, CallStart, TextEvent, ToolCallParser
from hearth.services.ids import random_id
from hearth.services.structured import StructuredPlan


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class ChoiceShaper:
    """One choice's output: text in, wire deltas out; remembers the calls for the final message."""

    def __init__(self, plan: StructuredPlan) -> None:
        self._plan = plan
        self._parser = ToolCallParser(plan.names, plan.profile) if plan.names else None
        self._calls: dict[int, _Call] = {}
        self._content: list[str] = []

    def feed(self, text: str) -> list[wire.ChoiceDelta]:
        if self._parser is None:
            if text:
                self._content.append(text)
            return [wire.ChoiceDelta(content=text)] if text else []
        return self._deltas(self._parser.feed(text))

    def close(self) -> list[wire.ChoiceDelta]:
        """End of output: whatever the parser held back comes out now."""
        return self._deltas(self._parser.finish()) if self._parser is not None else []

    def _deltas(self, events: list[TextEvent | CallStart | CallArgs]) -> list[wire.ChoiceDelta]:
        out: list[wire.ChoiceDelta] = []
        for ev in events:
            if isinstance(ev, TextEvent):
                if ev.text:
                    self._content.append(ev.text)
                    out.append(wire.ChoiceDelta(content=ev.text))
                continue
            if ev.index > 0 and not self._plan.parallel:
                continue  # parallel_tool_calls=false: one call per reply
            if isinstance(ev, CallStart):
                call = _Call(id=random_id("call_"), name=ev.name)
                self._calls[ev.index] = call
                out.append(self._start_delta(ev.index, call))
            elif ev.fragment and ev.index in self._calls:
                self._calls[ev.index].arguments.append(ev.fragment)
                out.append(self._args_delta(ev.index, ev.fragment))
        return out

    def _start_delta(self, index: int, call: _Call) -> wire.ChoiceDelta:
        if self._plan.legacy:
            return wire.ChoiceDelta(function_call=wire.FunctionCallDelta(name=call.name, arguments=""))
        return wire.ChoiceDelta(tool_calls=[wire.ToolCallDelta(
            index=index, id=call.id, type="function",
            function=wire.FunctionCallDelta(name=call.name, arguments=""))])

    def _args_delta(self, index: int, fragment: str) -> wire.ChoiceDelta:
        if self._plan.legacy:
            return wire.ChoiceDelta(function_call=wire.FunctionCallDelta(arguments=fragment))
        return wire.ChoiceDelta(tool_calls=[wire.ToolCallDelta(
            index=index, function=wire.FunctionCallDelta(arguments=fragment))])

    @property
    def has_calls(self) -> bool:
        return bool(self._calls)

    def finish_reason(self, reason: FinishReason | None) -> str:
        if reason is FinishReason.LENGTH:
            return "length"  # cut off, even mid-call: the client must know the call may be incomplete
        if self._calls:
            return "function_call" if self._plan.legacy else "tool_calls"
        return "stop"

    def message(self) -> wire.ResponseMessage:
        text = "".join(self._content)
        if not self._calls:
            return wire.ResponseMessage(content=text)
        calls = [self._calls[i] for i in sorted(self._calls)]
        content = text if text.strip() else None
        if self._plan.legacy:
            c = calls[0]
            return wire.ResponseMessage(content=content, function_call=wire.ResponseFunctionCall(
                name=c.name, arguments="".join(c.arguments)))
        return wire.ResponseMessage(content=content, tool_calls=[
            wire.ResponseToolCall(id=c.id, function=wire.ResponseFunctionCall(
                name=c.name, arguments="".join(c.arguments)))
            for c in calls
        ])
