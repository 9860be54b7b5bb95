"""The request path's view of per-project policies (rate-limit overrides, spend limits).

Admission must never wait on the database: the whole policy table is small, so it is loaded at once
and reloaded in the background every ``refresh_s`` seconds (changes made through another replica
take effect within that time; changes made through this one, at once).
"""

from __future__ import annotations

import asyncio
import logging

from hearth.platform.policies import PolicySnapshot, PolicyStore

log = logging.getLogger("hearth.policy")


class PolicyCache:
    def __init__(self, store: PolicyStore | None, refresh_s: float = 5.0) -> None:
        self.store = store
        self._refresh_s = refresh_s
        self._snap = PolicySnapshot()

    def current(self) -> PolicySnapshot:
        """The snapshot in force. Its identity changes exactly when it is reloaded."""
        return self._snap

    def load(self) -> None:
        """Reload now (blocking; call from a thread, or at startup)."""
        if self.store is not None:
            self._snap = self.store.snapshot()

    async def reload(self) -> None:
        await asyncio.to_thread(self.load)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.reload()
            except Exception:  # a database hiccup: keep the last snapshot, try again next time
                log.warning("could not reload rate-limit overrides and spend limits", exc_info=True)
