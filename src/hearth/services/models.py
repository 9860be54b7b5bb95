"""The Models use case: what this server serves, in OpenAI's shapes. Aliases are listed too."""

from __future__ import annotations

from hearth.engine.errors import ModelNotFound
from hearth.engine.registry import EngineRegistry
from hearth.protocol.models import Model, ModelList


class ModelsService:
    def __init__(self, registry: EngineRegistry, created: int) -> None:
        self._registry = registry
        self._created = created

    def list(self) -> ModelList:
        data = [Model(id=e.info.id, created=self._created, owned_by=e.info.owned_by)
                for e in self._registry.engines()]
        data += [Model(id=a, created=self._created, owned_by="hearth") for a in self._registry.aliases()]
        return ModelList(data=data)

    def retrieve(self, model: str) -> Model:
        for m in self.list().data:
            if m.id == model:
                return m
        raise ModelNotFound(model)
