"""Usage, costs, project rate limits and spend limits (/v1/organization/...), OpenAI's shapes.

Spend limits are a hearth extension (OpenAI sets budgets only in its dashboard); their shape follows
the admin API's conventions (an ``object`` name, integer unix times, USD as floats).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompletionsUsageResult(BaseModel):
    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int
    output_tokens: int
    input_cached_tokens: int
    input_uncached_tokens: int
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    num_model_requests: int
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    batch: bool | None = None
    service_tier: str | None = None


class EmbeddingsUsageResult(BaseModel):
    object: Literal["organization.usage.embeddings.result"] = "organization.usage.embeddings.result"
    input_tokens: int
    num_model_requests: int
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None


class ModerationsUsageResult(EmbeddingsUsageResult):
    object: Literal["organization.usage.moderations.result"] = "organization.usage.moderations.result"  # type: ignore[assignment]


class CostAmount(BaseModel):
    value: float
    currency: Literal["usd"] = "usd"


class CostsResult(BaseModel):
    object: Literal["organization.costs.result"] = "organization.costs.result"
    amount: CostAmount
    line_item: str | None = None
    project_id: str | None = None
    api_key_id: str | None = None
    quantity: float | None = None
    quantity_unit: str | None = None


UsageResult = CompletionsUsageResult | EmbeddingsUsageResult | ModerationsUsageResult | CostsResult


class UsageBucket(BaseModel):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[UsageResult]


class UsagePage(BaseModel):
    object: Literal["page"] = "page"
    data: list[UsageBucket]
    has_more: bool
    next_page: str | None = None


class ProjectRateLimit(BaseModel):
    object: Literal["project.rate_limit"] = "project.rate_limit"
    id: str
    model: str
    max_requests_per_1_minute: int | None = None
    max_tokens_per_1_minute: int | None = None
    max_requests_per_1_day: int | None = None
    batch_1_day_max_input_tokens: int | None = None
    # hearth extension: OpenAI publishes no tokens-per-day limit per project.
    max_tokens_per_1_day: int | None = None


class ProjectRateLimitUpdate(_Strict):
    max_requests_per_1_minute: int | None = Field(default=None, ge=1)
    max_tokens_per_1_minute: int | None = Field(default=None, ge=1)
    max_requests_per_1_day: int | None = Field(default=None, ge=1)
    batch_1_day_max_input_tokens: int | None = Field(default=None, ge=1)
    max_tokens_per_1_day: int | None = Field(default=None, ge=1)
    # Accepted for compatibility; hearth serves no image or audio models yet, so they limit nothing.
    max_images_per_1_minute: int | None = Field(default=None, ge=1)
    max_audio_megabytes_per_1_minute: int | None = Field(default=None, ge=1)


class SpendLimit(BaseModel):
    object: Literal["organization.spend_limit", "project.spend_limit"]
    project_id: str | None = None
    monthly_limit_usd: float | None  # None: no limit
    spent_this_month_usd: float
    held_usd: float  # worst-case cost of requests in flight, released as they finish
    period_start: int  # unix time the current month began (UTC); limits reset then


class SpendLimitUpdate(_Strict):
    monthly_limit_usd: float | None = Field(ge=0)
