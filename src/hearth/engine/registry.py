"""Model id (or alias) -> loaded Engine."""

from __future__ import annotations

from collections.abc import Iterable

from hearth.engine.errors import ModelNotFound
from hearth.engine.interface import Engine


class EngineRegistry:
    """The engines this process serves, looked up by id or alias. Filled once at startup."""

    def __init__(self, engines: Iterable[Engine] = (), aliases: dict[str, str] | None = None) -> None:
        self._engines: dict[str, Engine] = {}
        self._aliases: dict[str, str] = {}
        for e in engines:
            self.add(e)
        for alias, target in (aliases or {}).items():
            self.alias(alias, target)

    def add(self, engine: Engine) -> None:
        self._engines[engine.info.id] = engine

    def alias(self, alias: str, target: str) -> None:
        self._aliases[alias] = target

    def get(self, model: str) -> Engine:
        engine = self._engines.get(model) or self._engines.get(self._aliases.get(model, ""))
        if engine is None:
            raise ModelNotFound(model)
        return engine

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def aliases(self) -> dict[str, str]:
        return {a: t for a, t in self._aliases.items() if t in self._engines}

    async def start(self) -> None:
        for e in self._engines.values():
            await e.start()

    async def stop(self) -> None:
        for e in self._engines.values():
            await e.stop()
