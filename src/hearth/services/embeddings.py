"""Embeddings use case: validate inputs against the model, embed them (batched), shape OpenAI's list.

Decisions (documented in the README's embeddings section):
- Usage counts the tokens the model reads, special tokens included (for BERT: [CLS] and [SEP]),
  which is also what the length limit applies to.
- An input longer than the model's maximum is rejected with 400 (`param: input`), as OpenAI
  does; it is never truncated silently.
- `dimensions` equal to the model's width is accepted; any other value is a 400, since models
  without Matryoshka training (MiniLM) lose their meaning when cut.
- Token arrays are ids of the model's own vocabulary; the special tokens are added unless the
  array already carries them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence

from hearth.engine.embedding import Embedder, EmbeddingBatcher, Vectors
from hearth.engine.errors import ModelNotFound
from hearth.protocol import embeddings as wire
from hearth.protocol.errors import InvalidRequest
from hearth.services.context import RequestContext
from hearth.services.metering import Metering, Ticket, status_of
from hearth.services.metrics import Metrics, outcome_for_error

log = logging.getLogger("hearth.embeddings")

ENDPOINT = "embeddings"  # the `endpoint` label of this service's metrics
MAX_REQUEST_TOKENS = 300_000  # OpenAI's cap on the tokens of all inputs of one request
_INLINE_CHARS = 20_000  # tokenize larger requests off the event loop


class EmbeddingsService:
    def __init__(self, embedders: Sequence[Embedder], aliases: Mapping[str, str] | None = None,
                 metrics: Metrics | None = None, metering: Metering | None = None,
                 max_merge: int = 256) -> None:
        self._batchers = {e.model_id: EmbeddingBatcher(e, max_merge=max_merge) for e in embedders}
        self._aliases = {a: t for a, t in (aliases or {}).items() if t in self._batchers}
        self._metrics = metrics if metrics is not None else Metrics()
        self._metering = metering

    def models(self) -> list[str]:
        return list(self._batchers)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def embedder(self, model: str) -> Embedder:
        """The embedder serving `model` (an id or alias); ModelNotFound otherwise."""
        return self._batcher(model).embedder

    def _batcher(self, model: str) -> EmbeddingBatcher:
        b = self._batchers.get(model) or self._batchers.get(self._aliases.get(model, ""))
        if b is None:
            raise ModelNotFound(model)
        return b

    async def create(self, req: wire.EmbeddingCreateRequest, ctx: RequestContext) -> wire.CreateEmbeddingResponse:
        try:
            batcher = self._batcher(req.model)
            e = batcher.embedder
            ctx.model = e.model_id
            _check_dimensions(req, e)
            lists = await _token_lists(req, e)
        except Exception as exc:
            self._metrics.rejected(ctx.model, ENDPOINT, exc)
            raise
        n_tokens = sum(len(t) for t in lists)
        ctx.prompt_tokens = n_tokens
        ticket = await self._admit(ctx, e.model_id, n_tokens)
        timer = self._metrics.timer(e.model_id, ENDPOINT, ctx.started)
        status = 499  # the client left (cancelled) unless the request ends otherwise
        try:
            vecs = await batcher.embed_tokens(lists)
            status = 200
        except BaseException as exc:
            timer.finish(outcome_for_error(exc))
            if isinstance(exc, Exception):
                status = status_of(exc)
            raise
        finally:
            if self._metering is not None:
                await self._metering.finish(ticket, ctx, status)
        timer.finish("stop")
        return wire.CreateEmbeddingResponse(
            data=_data(vecs, req.encoding_format == "base64"), model=req.model,
            usage=wire.EmbeddingUsage(prompt_tokens=n_tokens, total_tokens=n_tokens),
        )

    async def _admit(self, ctx: RequestContext, model: str, n_tokens: int) -> Ticket | None:
        """Hold spend and reserve rate limits for the input tokens (nothing is generated)."""
        if self._metering is None:
            return None
        try:
            return await self._metering.admit(ctx, ENDPOINT, model, n_tokens, max_tokens_asked=0,
                                              max_tokens_upper=0)
        except Exception as exc:
            self._metrics.rejected(model, ENDPOINT, exc)
            raise

    def close(self) -> None:
        for b in self._batchers.values():
            b.close()


def _check_dimensions(req: wire.EmbeddingCreateRequest, e: Embedder) -> None:
    if req.dimensions is not None and req.dimensions != e.dimensions:
        raise InvalidRequest(
            f"The model `{req.model}` does not support specifying dimensions: it always returns "
            f"{e.dimensions}-dimensional embeddings (it was not trained to be shortened). Leave "
            f"`dimensions` out or set it to {e.dimensions}.", param="dimensions", code="unsupported_value")


async def _token_lists(req: wire.EmbeddingCreateRequest, e: Embedder) -> list[list[int]]:
    inputs = req.inputs()
    if isinstance(inputs[0], str):
        texts: list[str] = inputs
        if sum(len(t) for t in texts) > _INLINE_CHARS:
            lists = await asyncio.to_thread(lambda: [e.tokenize(t) for t in texts])
        else:
            lists = [e.tokenize(t) for t in texts]
    else:
        lists = [e.with_special_tokens(ids) for ids in inputs]
        for i, ids in enumerate(lists):
            bad = next((t for t in ids if t >= e.vocab_size), None)
            if bad is not None:
                where = f" in input {i}" if len(lists) > 1 else ""
                raise InvalidRequest(
                    f"Token id {bad}{where} is outside the vocabulary of `{req.model}` (ids 0 to "
                    f"{e.vocab_size - 1}).", param="input", code="invalid_value")
    total = 0
    for i, ids in enumerate(lists):
        if len(ids) > e.max_tokens:
            where = f"input {i} has" if len(lists) > 1 else "the input has"
            raise InvalidRequest(
                f"This model's maximum context length is {e.max_tokens} tokens, however {where} "
                f"{len(ids)} tokens. Please reduce the length of the input.", param="input",
                code="context_length_exceeded")
        if not ids:  # a text of only whitespace or control characters, for a model without specials
            raise InvalidRequest(f"Input {i} has no tokens; every input must contain text.", param="input",
                                 code="invalid_value")
        total += len(ids)
    if total > MAX_REQUEST_TOKENS:
        raise InvalidRequest(f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request.",
                             param="input", code="max_tokens_per_request")
    return lists


def _data(vecs: Vectors, as_base64: bool) -> list[wire.Embedding]:
    if as_base64:
        le = vecs.astype("<f4", copy=False)
        return [wire.Embedding(index=i, embedding=base64.b64encode(le[i].tobytes()).decode("ascii"))
                for i in range(len(le))]
    return [wire.Embedding(index=i, embedding=row) for i, row in enumerate(vecs.tolist())]
