"""Per-request bookkeeping shared between the HTTP edge and the services (for the access log)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from hearth.platform.keys import Principal


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    finish: str | None = None
    principal: Principal | None = None  # None when auth is off
    # Extra headers for the response (x-ratelimit-*), set before the response starts.
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        """The prefix-cache namespace: one project's prompts never speed up or reveal another's."""
        p = self.principal
        return (p.project_id or p.org_id) if p is not None else ""
