"""Moderations use case: check the model, classify the inputs off the event loop, shape OpenAI's object.

Decisions:
- `omni-moderation-latest`, `omni-moderation-2024-09-26`, `text-moderation-latest` and
  `text-moderation-stable` (and the classifier's own id) all name the one classifier served;
  any other model is 404 `model_not_found`. The response names the classifier's own id.
- A string or an array of strings gives one result per string; an array of content parts is
  one input (its text parts joined by newlines) and gives one result, as OpenAI's omni model does.
- Image parts are a 400 (`param: input`, code `image_input_not_supported`): the classifier reads
  text only, and answering for an image it never looked at would be a false "not flagged".
- Classification runs on one worker thread: calls never overlap (the embedding model's context
  is single-threaded) and the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from hearth.engine.errors import EngineDead, EngineError, ModelNotFound
from hearth.engine.moderation import CATEGORIES, Classification, Moderator
from hearth.protocol import moderations as wire
from hearth.protocol.errors import InvalidRequest
from hearth.services.context import RequestContext
from hearth.services.ids import random_id
from hearth.services.metering import Metering, status_of
from hearth.services.metrics import Metrics, outcome_for_error

log = logging.getLogger("hearth.moderations")

OPENAI_MODELS = ("omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest",
                 "text-moderation-stable")
DEFAULT_MODEL = "omni-moderation-latest"
ENDPOINT = "moderations"  # the metrics label and the usage API's family


class ModerationsService:
    """`moderator` None: no classifier is served, and every request is 404 model_not_found."""

    def __init__(self, moderator: Moderator | None, metrics: Metrics | None = None,
                 metering: Metering | None = None) -> None:
        self._moderator = moderator
        self._metrics = metrics if metrics is not None else Metrics()
        self._metering = metering
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="moderation")  # threads start on use

    def models(self) -> list[str]:
        return [self._moderator.model_id] if self._moderator is not None else []

    def aliases(self) -> dict[str, str]:
        """OpenAI's moderation model names, all served by the one classifier."""
        m = self._moderator
        return {name: m.model_id for name in OPENAI_MODELS} if m is not None else {}

    def resolve(self, model: str | None) -> Moderator:
        name = model or DEFAULT_MODEL
        m = self._moderator
        if m is None or (name not in OPENAI_MODELS and name != m.model_id):
            raise ModelNotFound(name)
        return m

    async def create(self, req: wire.ModerationCreateRequest, ctx: RequestContext) -> wire.ModerationCreateResponse:
        try:
            moderator = self.resolve(req.model)
            ctx.model = moderator.model_id
            texts = texts_of(req.input)
            # WordPiece gives at most one token per character, plus [CLS] and [SEP]: an upper bound
            # to reserve before the model has counted; settled to the real count.
            upper = sum(len(t) + 2 for t in texts)
            ticket = (await self._metering.admit(ctx, ENDPOINT, moderator.model_id, upper, max_tokens_asked=0,
                                                 max_tokens_upper=0)
                      if self._metering is not None else None)
        except Exception as exc:
            self._metrics.rejected(ctx.model, ENDPOINT, exc)
            raise
        timer = self._metrics.timer(moderator.model_id, ENDPOINT, ctx.started)
        loop = asyncio.get_running_loop()
        status = 499  # the client left unless the request ends otherwise

        def run() -> tuple[list[Classification], int]:
            return moderator.classify(texts), moderator.count_tokens(texts)

        try:
            verdicts, ctx.prompt_tokens = await loop.run_in_executor(self._executor, run)
            status = 200
        except BaseException as exc:
            timer.finish(outcome_for_error(exc))
            if isinstance(exc, Exception):
                status = status_of(exc)
                if not isinstance(exc, EngineError):
                    log.error("moderation classifier failed", exc_info=exc)
                    raise EngineDead(f"the moderation classifier failed: {exc.__class__.__name__}") from exc
            raise
        finally:
            if self._metering is not None:
                await self._metering.finish(ticket, ctx, status)
        timer.finish("stop")
        return wire.ModerationCreateResponse(id=random_id("modr-"), model=moderator.model_id,
                                             results=[to_wire(v) for v in verdicts])

    def warm(self) -> None:
        """Load the classifier's models in the background (its own worker thread), so the first
        request does not wait ~2 s for them; requests that arrive meanwhile queue behind it."""
        m = self._moderator
        if m is not None:
            self._executor.submit(_warm, m)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _warm(m: Moderator) -> None:
    try:
        m.classify(["warm-up"])
    except Exception:  # the first real request reports the failure properly
        log.warning("moderation classifier failed to load at start", exc_info=True)


def texts_of(inp: str | list[str] | list[wire.ModerationPart]) -> list[str]:
    """The texts to classify, one per result (see the module's decisions)."""
    if isinstance(inp, str):
        return [inp]
    if all(isinstance(x, str) for x in inp):
        return [x for x in inp if isinstance(x, str)]
    if any(isinstance(x, wire.ModerationImagePart) for x in inp):
        raise InvalidRequest("Image inputs are not supported by this server's moderation model yet: it "
                             "classifies text only. Send text parts ({'type': 'text', 'text': ...}) or strings.",
                             param="input", code="image_input_not_supported")
    return ["\n".join(x.text for x in inp if isinstance(x, wire.ModerationTextPart))]


def to_wire(v: Classification) -> wire.Moderation:
    return wire.Moderation(
        flagged=v.flagged,
        categories=wire.Categories.model_validate({c: v.flags[c] for c in CATEGORIES}),
        category_scores=wire.CategoryScores.model_validate({c: round(v.scores[c], 6) for c in CATEGORIES}),
        category_applied_input_types=wire.CategoryAppliedInputTypes.model_validate({c: ["text"] for c in CATEGORIES}),
    )
