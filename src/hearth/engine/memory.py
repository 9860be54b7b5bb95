"""What serving a model costs in memory, checked before anything is loaded.

Several models share one machine. Each costs its weights (mapped from the GGUF file), its KV cache
(n_ctx cells, f16 keys and values for every layer) and llama.cpp's compute buffers (sized for a
full micro-batch, dominated by the output layer's logits). hearth refuses to start when the sum
exceeds the memory limit, with the figures, instead of being killed by the OOM killer under load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hearth.engine.errors import EngineError

MiB = 1 << 20


class InsufficientMemory(EngineError):
    """The models asked for do not fit in the memory limit."""


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The figures of a model that decide its memory use (read from GGUF metadata)."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    key_length: int = 0  # per-head key size; 0: n_embd / n_head
    value_length: int = 0


@dataclass(frozen=True, slots=True)
class Footprint:
    model_id: str
    weights: int
    kv: int
    compute: int
    host_cache: int = 0  # idle cached prefixes parked in host memory (at most)

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute + self.host_cache

    def describe(self) -> str:
        return (f"{self.model_id}: {self.total // MiB} MiB (weights {self.weights // MiB}, "
                f"KV cache {self.kv // MiB}, compute {self.compute // MiB}, "
                f"host prefix cache {self.host_cache // MiB})")


def footprint(model_id: str, weights_bytes: int, shape: ModelShape, n_ctx: int, n_ubatch: int,
              host_cache: int = 0) -> Footprint:
    head = shape.n_embd // max(1, shape.n_head)
    k = shape.key_length or head
    v = shape.value_length or head
    kv = n_ctx * shape.n_layer * shape.n_head_kv * (k + v) * 2  # f16 cells
    # Worst-case graph of one micro-batch: logits for every token plus activations.
    compute = n_ubatch * (shape.n_vocab + 16 * shape.n_embd) * 4
    return Footprint(model_id, weights_bytes, kv, compute, host_cache)


def check_fits(footprints: Sequence[Footprint], limit_bytes: int) -> None:
    need = sum(f.total for f in footprints)
    if need <= limit_bytes:
        return
    lines = "; ".join(f.describe() for f in footprints)
    raise InsufficientMemory(
        f"The models to serve need about {need // MiB} MiB ({lines}) but the memory limit is "
        f"{limit_bytes // MiB} MiB. Serve fewer models, lower engine.n_ctx (the KV cache) or raise "
        "engine.memory_limit_mb."
    )


def system_memory_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """Total RAM (or None where /proc/meminfo is absent); a cgroup limit wins when it is lower."""
    total: int | None = None
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except OSError:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            raw = f.read().strip()
        if raw.isdigit() and total is not None:
            total = min(total, int(raw))
    except OSError:
        pass
    return total
