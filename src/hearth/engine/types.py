"""Plain data types shared by every engine backend. No HTTP, no pydantic."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FinishReason(str, enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Per-request sampling settings. Ranges are validated at the protocol edge."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True, slots=True)
class Constraint:
    """The output must match this grammar: llguidance's Lark dialect (it may embed `%json {...}`).

    Backends enforce it with a token mask at every step, so a constrained request can end only
    where the grammar accepts (or at max_tokens, reported as `length`).
    """

    grammar: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One sequence to generate. `n` choices are n requests sharing a prompt."""

    request_id: str
    prompt_tokens: tuple[int, ...]
    params: SamplingParams
    # Cache namespace: prompts are only reused between requests of the same tenant.
    cache_key: str = ""
    constraint: Constraint | None = None


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    token_bytes: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    token_bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(slots=True)
class Delta:
    """What one engine step produced for one sequence.

    `text` is already safe to show: never a partial UTF-8 character and never
    any part of a stop string. `finish_reason` is set on the last delta only.
    """

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the layers above need to know about a loaded model."""

    id: str
    context_length: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    owned_by: str = "hearth"
    created: int = 0
    kind: str = "chat"


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    """A point-in-time snapshot of one engine, read at scrape time.

    Gauges (`running`, `waiting`, `kv_*`) describe now; the `*_total` fields and
    `prefix_cache_hit_tokens` are cumulative since the engine started and never decrease.
    """

    running: int = 0  # sequences being decoded or prefilled
    waiting: int = 0  # sequences queued for admission
    kv_used_tokens: int = 0  # KV cells reserved or filled by live sequences
    kv_capacity_tokens: int = 0  # total KV cells (0: unknown)
    prefix_cache_hit_tokens: int = 0  # prompt tokens served from the prefix cache
    prefix_cache_host_tokens: int = 0  # cached prefix tokens parked in host memory (a gauge)
    prompt_tokens_total: int = 0  # prompt tokens accepted for prefill
    generated_tokens_total: int = 0  # tokens sampled
