"""Chat Completions use case: render the prompt, run the engine, shape OpenAI's objects."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hearth.engine.errors import ContextLengthExceeded
from hearth.engine.interface import Engine
from hearth.engine.registry import EngineRegistry
from hearth.engine.types import Delta, FinishReason, GenerationRequest
from hearth.protocol import chat as wire
from hearth.protocol.errors import InvalidRequest
from hearth.rendering.chat_template import (
    ChatTemplate,
    MissingChatTemplate,
    TemplateError,
    load_chat_template,
)
from hearth.services import convert, structured
from hearth.services.chat_output import ChoiceShaper
from hearth.services.context import RequestContext
from hearth.services.ids import random_id
from hearth.services.metering import Metering, Ticket, status_of
from hearth.services.metrics import Metrics, RequestTimer, outcome_for_error, outcome_for_finish

log = logging.getLogger("hearth.chat")

ENDPOINT = "chat.completions"  # the `endpoint` label of this service's metrics
USAGE_ENDPOINT = "completions"  # the usage API's family (/v1/organization/usage/completions)


@dataclass(slots=True)
class PreparedChat:
    """A validated request, ready to run: the prompt is rendered and tokenized, limits checked."""

    id: str
    created: int
    model: str
    engine: Engine
    requests: list[GenerationRequest]
    include_usage: bool
    fingerprint: str
    plan: structured.StructuredPlan
    max_tokens_asked: int | None = None  # what the client asked for (None: up to the context)
    ticket: Ticket | None = None  # rate-limit and spend reservations, settled when the request ends

    @property
    def prompt_tokens(self) -> int:
        return len(self.requests[0].prompt_tokens)


class ChatService:
    def __init__(self, registry: EngineRegistry, metrics: Metrics | None = None,
                 metering: Metering | None = None) -> None:
        self._registry = registry
        self._metrics = metrics if metrics is not None else Metrics()
        self._metering = metering
        self._templates: dict[str, ChatTemplate] = {}

    async def admit(self, p: PreparedChat, ctx: RequestContext) -> None:
        """Hold spend and reserve rate limits (429 if over); settled and recorded when it ends."""
        if self._metering is None:
            return
        try:
            p.ticket = await self._metering.admit(
                ctx, USAGE_ENDPOINT, p.engine.info.id, p.prompt_tokens, max_tokens_asked=p.max_tokens_asked,
                max_tokens_upper=p.requests[0].params.max_tokens, n=len(p.requests))
        except Exception as exc:
            self._metrics.rejected(ctx.model, ENDPOINT, exc)
            raise

    async def _settle(self, p: PreparedChat, ctx: RequestContext, status: int) -> None:
        if self._metering is not None:
            await self._metering.finish(p.ticket, ctx, status)

    def healthy(self) -> bool:
        return all(e.health() for e in self._registry.engines())

    def _template(self, engine: Engine) -> ChatTemplate:
        info = engine.info
        tpl = self._templates.get(info.id)
        if tpl is None:
            try:
                tpl = load_chat_template(info.chat_template, info.bos_token, info.eos_token, info.id)
            except (MissingChatTemplate, TemplateError) as exc:
                raise InvalidRequest(str(exc), param="model", code="model_has_no_chat_template") from exc
            self._templates[info.id] = tpl
        return tpl

    def prepare(self, req: wire.ChatCompletionRequest, ctx: RequestContext) -> PreparedChat:
        """Everything that can fail before the first byte is sent fails here, as a typed error."""
        try:
            return self._prepare(req, ctx)
        except Exception as exc:
            self._metrics.rejected(ctx.model, ENDPOINT, exc)
            raise

    def _prepare(self, req: wire.ChatCompletionRequest, ctx: RequestContext) -> PreparedChat:
        convert.check_supported(req)
        engine = self._registry.get(req.model)
        info = engine.info
        ctx.model = info.id
        plan = structured.plan(req, info.chat_template)
        messages = convert.messages_for_template(req.messages)
        if plan.system_addendum:
            messages = convert.with_system_text(messages, plan.system_addendum)
        try:
            prompt_text = self._template(engine).render(
                messages, add_generation_prompt=True, tools=plan.template_tools
            )
        except TemplateError as exc:
            raise InvalidRequest(
                f"The model's chat template rejected these messages: {exc}", param="messages",
                code="invalid_messages",
            ) from exc
        # The template already emits BOS where the model wants it; parse special tokens in it.
        prompt = tuple(engine.tokenize(prompt_text, special=True))
        limit = info.context_length
        requested = req.max_completion_tokens or req.max_tokens
        if requested is not None and len(prompt) + requested > limit:
            raise ContextLengthExceeded(limit, len(prompt), requested)
        if len(prompt) >= limit:
            raise ContextLengthExceeded(limit, len(prompt), 1)
        max_tokens = requested or (limit - len(prompt))
        chat_id = random_id("chatcmpl-")
        n = req.n or 1
        reqs = [
            GenerationRequest(
                request_id=f"{chat_id}-{i}",
                prompt_tokens=prompt,
                params=convert.sampling_params(req, max_tokens, i),
                constraint=plan.constraint,
                cache_key=ctx.tenant,
            )
            for i in range(n)
        ]
        ctx.prompt_tokens = len(prompt)
        return PreparedChat(
            id=chat_id,
            created=int(time.time()),
            model=req.model,
            engine=engine,
            requests=reqs,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            fingerprint=_fingerprint(info.id),
            plan=plan,
            max_tokens_asked=requested,
        )

    async def complete(self, p: PreparedChat, ctx: RequestContext) -> wire.ChatCompletion:
        status = 499  # the client left (cancelled) unless the request ends otherwise
        try:
            result = await self._complete(p, ctx)
            status = 200
            return result
        except Exception as exc:
            status = status_of(exc)
            raise
        finally:
            await self._settle(p, ctx, status)

    async def _complete(self, p: PreparedChat, ctx: RequestContext) -> wire.ChatCompletion:
        timer = self._metrics.timer(p.engine.info.id, ENDPOINT, ctx.started, len(p.requests))
        tasks = [asyncio.ensure_future(_collect(p.engine, r, timer, i)) for i, r in enumerate(p.requests)]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException as exc:
            timer.finish(outcome_for_error(exc))
            raise
        finally:
            # gather() leaves the other choices running when one fails (or we are cancelled).
            for t in tasks:
                t.cancel()
        timer.finish(outcome_for_finish([last.finish_reason for _, _, last in results]))
        choices = []
        completion = cached = 0
        for i, (text, logprobs, last) in enumerate(results):
            completion += last.completion_tokens
            cached = max(cached, last.cached_tokens)
            shaper = ChoiceShaper(p.plan)
            shaper.feed(text)
            shaper.close()
            choices.append(
                wire.Choice(
                    index=i,
                    message=shaper.message(),
                    logprobs=wire.ChoiceLogprobs(content=convert.logprobs_to_wire(logprobs))
                    if p.requests[i].params.logprobs
                    else None,
                    finish_reason=shaper.finish_reason(last.finish_reason),  # type: ignore[arg-type]
                )
            )
        ctx.completion_tokens, ctx.cached_tokens = completion, cached
        ctx.finish = choices[0].finish_reason if choices else None
        return wire.ChatCompletion(
            id=p.id,
            created=p.created,
            model=p.model,
            system_fingerprint=p.fingerprint,
            choices=choices,
            usage=_usage(p.prompt_tokens, completion, cached),
        )

    async def stream(self, p: PreparedChat, ctx: RequestContext) -> AsyncIterator[wire.ChatCompletionChunk]:
        """Chunks as OpenAI streams them. Closing the iterator aborts every choice's generation."""

        def chunk(choices: list[wire.ChunkChoice], usage: wire.CompletionUsage | None = None
                  ) -> wire.ChatCompletionChunk:
            return wire.ChatCompletionChunk(
                id=p.id, created=p.created, model=p.model, system_fingerprint=p.fingerprint,
                choices=choices, usage=usage,
            )

        timer = self._metrics.timer(p.engine.info.id, ENDPOINT, ctx.started, len(p.requests))
        status = 499  # the client left (GeneratorExit, cancelled) unless the stream ends otherwise
        try:
            yield chunk([
                wire.ChunkChoice(index=i, delta=wire.ChoiceDelta(role="assistant", content=""))
                for i in range(len(p.requests))
            ])
            completion = cached = 0
            # Tokens of choices still running, so that a client that leaves is still accounted for.
            running = [0] * len(p.requests)
            shapers = [ChoiceShaper(p.plan) for _ in p.requests]
            finishes: list[FinishReason | None] = []
            async for i, d in _merge(p.engine, p.requests):
                n_tok = len(d.token_ids)
                if n_tok:
                    timer.token(i, n_tok)
                running[i] += n_tok
                if d.finish_reason is not None:
                    finishes.append(d.finish_reason)
                    running[i] = 0
                    completion += d.completion_tokens
                    cached = max(cached, d.cached_tokens)
                    ctx.cached_tokens = cached
                ctx.completion_tokens = completion + sum(running)
                lp = (
                    wire.ChoiceLogprobs(content=convert.logprobs_to_wire(d.logprobs))
                    if p.requests[i].params.logprobs and d.logprobs
                    else None
                )
                deltas = shapers[i].feed(d.text) if d.text else []
                if d.finish_reason is not None:
                    deltas += shapers[i].close()
                if lp is not None and not deltas:
                    deltas = [wire.ChoiceDelta(content="")]
                for k, delta in enumerate(deltas):
                    yield chunk([wire.ChunkChoice(index=i, delta=delta, logprobs=lp if k == 0 else None)])
                if d.finish_reason is not None:
                    reason = shapers[i].finish_reason(d.finish_reason)
                    ctx.finish = reason
                    yield chunk([wire.ChunkChoice(index=i, delta=wire.ChoiceDelta(), finish_reason=reason)])  # type: ignore[arg-type]
            # Counted before the usage chunk: the generation is complete even if that last write fails.
            timer.finish(outcome_for_finish(finishes))
            status = 200
            # Recorded before the usage chunk and [DONE]: when the client has seen the end, the
            # ledger holds the record.
            await self._settle(p, ctx, status)
            if p.include_usage:
                yield chunk([], _usage(p.prompt_tokens, completion, cached))
        except BaseException as exc:  # the client left (GeneratorExit, CancelledError) or the engine failed
            timer.finish(outcome_for_error(exc))
            if isinstance(exc, Exception):
                status = status_of(exc)
            raise
        finally:
            # Tokens generated so far, also for a client that left: the estimate's rest flows back.
            await self._settle(p, ctx, status)


def _usage(prompt: int, completion: int, cached: int) -> wire.CompletionUsage:
    return wire.CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=wire.PromptTokensDetails(cached_tokens=cached),
    )


@functools.lru_cache(maxsize=64)  # one hash per served model, not one per request
def _fingerprint(model_id: str) -> str:
    return "fp_" + hashlib.sha256(f"hearth:{model_id}".encode()).hexdigest()[:10]


async def _collect(engine: Engine, req: GenerationRequest, timer: RequestTimer, index: int
                   ) -> tuple[str, list, Delta]:  # type: ignore[type-arg]
    parts: list[str] = []
    logprobs = []
    last = Delta(finish_reason=FinishReason.STOP)
    async for d in engine.generate(req):
        if d.token_ids:
            timer.token(index, len(d.token_ids))
        parts.append(d.text)
        logprobs.extend(d.logprobs)
        last = d
    return "".join(parts), logprobs, last


async def _merge(engine: Engine, reqs: list[GenerationRequest]) -> AsyncIterator[tuple[int, Delta]]:
    """Interleave the deltas of n choices. One choice needs no tasks and no queue."""
    if len(reqs) == 1:
        async for d in engine.generate(reqs[0]):
            yield 0, d
        return
    # Bounded: a slow consumer makes the pumps wait, so the engine merges deltas in its mailboxes
    # instead of this queue growing (one buffer policy for n=1 and n>1 alike).
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue(maxsize=len(reqs))

    async def pump(i: int, r: GenerationRequest) -> None:
        try:
            async for d in engine.generate(r):
                await queue.put((i, d))
            await queue.put((i, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - surfaced to the consumer, which owns error handling
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(reqs)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
