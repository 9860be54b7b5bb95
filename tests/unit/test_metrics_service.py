"""services/metrics.py: outcome labels and the per-request timer."""

from __future__ import annotations

import asyncio
import time

import pytest

from hearth.engine.errors import (
    ContextLengthExceeded,
    EngineDead,
    GenerationFailed,
    ModelNotFound,
    Overloaded,
)
from hearth.engine.types import FinishReason
from hearth.protocol.errors import InvalidRequest, UnsupportedParameter
from hearth.services.metrics import OUTCOMES, Metrics, outcome_for_error, outcome_for_finish


@pytest.mark.parametrize(("exc", "outcome"), [
    (asyncio.CancelledError(), "cancelled"),
    (GeneratorExit(), "cancelled"),
    (Overloaded(), "rejected"),
    (InvalidRequest("x"), "client_error"),
    (UnsupportedParameter("tools"), "client_error"),
    (ModelNotFound("m"), "client_error"),
    (ContextLengthExceeded(8, 4, 8), "client_error"),
    (GenerationFailed("x"), "server_error"),
    (EngineDead("x"), "server_error"),
    (RuntimeError("x"), "server_error"),
])
def test_outcome_for_error(exc: BaseException, outcome: str) -> None:
    assert outcome_for_error(exc) == outcome
    assert outcome in OUTCOMES


def test_outcome_for_finish() -> None:
    assert outcome_for_finish([FinishReason.STOP, FinishReason.STOP]) == "stop"
    assert outcome_for_finish([FinishReason.STOP, FinishReason.LENGTH]) == "length"
    assert outcome_for_finish([FinishReason.LENGTH, FinishReason.ABORT]) == "cancelled"
    assert outcome_for_finish([]) == "stop"


def _value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_timer_divides_merged_deltas_and_finishes_once() -> None:
    m = Metrics()
    t = m.timer("mdl", "chat.completions", time.perf_counter() - 0.5, choices=2)
    t.token(0, 1)  # first token of the request: TTFT ~0.5 s
    t.token(1, 1)  # first token of choice 1: neither TTFT nor a gap
    time.sleep(0.2)
    t.token(0, 4)  # a merged delta of 4 tokens, 0.2 s after the previous: 0.05 s per token
    t.finish("length")
    t.finish("cancelled")  # ignored
    assert _value(m, "hearth_time_to_first_token_seconds_count", model="mdl") == 1
    assert 0.5 <= (_value(m, "hearth_time_to_first_token_seconds_sum", model="mdl") or 0) < 0.6
    assert _value(m, "hearth_inter_token_latency_seconds_count", model="mdl") == 1
    assert 0.045 <= (_value(m, "hearth_inter_token_latency_seconds_sum", model="mdl") or 0) < 0.1
    assert _value(m, "hearth_requests_total", model="mdl", endpoint="chat.completions", outcome="length") == 1
    assert _value(m, "hearth_requests_total", model="mdl", endpoint="chat.completions",
                  outcome="cancelled") is None
    assert _value(m, "hearth_request_duration_seconds_count", model="mdl", endpoint="chat.completions") == 1


def test_rejected_uses_unknown_model_label() -> None:
    m = Metrics()
    m.rejected(None, "chat.completions", ModelNotFound("whatever-the-client-sent"))
    assert _value(m, "hearth_requests_total", model="unknown", endpoint="chat.completions",
                  outcome="client_error") == 1
