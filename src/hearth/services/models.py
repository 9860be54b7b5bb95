"""The Models use case: what this server serves, in OpenAI's shapes. Aliases are listed too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hearth.engine.errors import ModelNotFound
from hearth.engine.registry import EngineRegistry
from hearth.protocol.models import Model, ModelList


class ModelsService:
    """`embedding_models` and `embedding_aliases`: what the embeddings and moderations endpoints
    serve, listed after the chat models."""

    def __init__(self, registry: EngineRegistry, created: int, embedding_models: Sequence[str] = (),
                 embedding_aliases: Mapping[str, str] | None = None) -> None:
        self._registry = registry
        self._created = created
        self._embedding_models = list(embedding_models)
        self._embedding_aliases = list(embedding_aliases or {})

    def list(self) -> ModelList:
        data = [Model(id=e.info.id, created=self._created, owned_by=e.info.owned_by)
                for e in self._registry.engines()]
        data += [Model(id=m, created=self._created, owned_by="hearth") for m in self._embedding_models]
        data += [Model(id=a, created=self._created, owned_by="hearth") for a in self._registry.aliases()]
        data += [Model(id=a, created=self._created, owned_by="hearth") for a in self._embedding_aliases]
        return ModelList(data=data)

    def retrieve(self, model: str) -> Model:
        for m in self.list().data:
            if m.id == model:
                return m
        raise ModelNotFound(model)
