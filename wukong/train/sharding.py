"""Sharding plans for the embedding tables: hybrid by size, TorchRec's planner, or one type for all.

The ``hybrid`` plan follows the usual practice for recommendation models:

- tables with at least ``row_wise_min_rows`` rows are **row-wise** sharded over every rank (the
  big id spaces: memory and look-up work are spread evenly);
- tables with at most ``data_parallel_max_rows`` rows are **replicated** (data-parallel: no
  communication for look-ups, gradients all-reduced with the dense parameters);
- the rest are **table-wise**, each whole table on one rank, placed largest-first on the rank with
  the fewest rows so far.

``planner`` asks TorchRec's ``EmbeddingShardingPlanner`` with an explicit ``Topology`` (on GPU the
device's real memory, not the 32 GB default). On CPU TorchRec's sharder offers no row-wise sharding,
so a sharder that reports the CUDA sharding types is used: they run on CPU with gloo.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.sharding_plan import (
    column_wise,
    construct_module_sharding_plan,
    data_parallel,
    row_wise,
    table_wise,
)
from torchrec.distributed.types import ShardingPlan
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from wukong.config import TrainConfig
from wukong.train.distributed import DistEnv
from wukong.train.optim import fused_params

EBC_PATH = "model.embedding.ebc"  # where the collection sits inside TrainModule
FUSED = "fused"


class CpuRowWiseSharder(EmbeddingBagCollectionSharder):
    """Offers the CUDA sharding types (row-wise included) on CPU, where they work with gloo."""

    def sharding_types(self, compute_device_type: str) -> list[str]:
        return super().sharding_types("cuda" if compute_device_type == "cpu" else compute_device_type)


def make_sharder(train: TrainConfig, env: DistEnv) -> EmbeddingBagCollectionSharder:
    """A sharder whose tables update themselves in backward with ``train.embedding_optimizer`` (row-wise
    Adagrad by default: the fused optimizer); see :func:`wukong.train.optim.fused_params`."""
    cls = CpuRowWiseSharder if env.device.type == "cpu" else EmbeddingBagCollectionSharder
    return cls(fused_params=fused_params(train, env.device.type))


def _hybrid(ebc: EmbeddingBagCollection, train: TrainConfig, world_size: int) -> dict[str, Callable]:
    tables = sorted(ebc.embedding_bag_configs(), key=lambda t: -t.num_embeddings * t.embedding_dim)
    load = [0] * world_size
    chosen = {}
    for table in tables:
        if table.num_embeddings >= train.row_wise_min_rows:
            chosen[table.name] = row_wise(compute_kernel=FUSED)
        elif table.num_embeddings <= train.data_parallel_max_rows:
            chosen[table.name] = data_parallel()
        else:
            rank = min(range(world_size), key=lambda r: load[r])
            load[rank] += table.num_embeddings * table.embedding_dim
            chosen[table.name] = table_wise(rank=rank, compute_kernel=FUSED)
    return chosen


def _uniform(ebc: EmbeddingBagCollection, kind: str, world_size: int) -> dict[str, Callable]:
    tables = ebc.embedding_bag_configs()
    make = {
        "row_wise": lambda i: row_wise(compute_kernel=FUSED),
        "column_wise": lambda i: column_wise(ranks=list(range(world_size)), compute_kernel=FUSED),
        "table_wise": lambda i: table_wise(rank=i % world_size, compute_kernel=FUSED),
        "data_parallel": lambda i: data_parallel(),
    }[kind]
    return {t.name: make(i) for i, t in enumerate(tables)}


def build_plan(
    module: torch.nn.Module, ebc: EmbeddingBagCollection, sharder, train: TrainConfig, env: DistEnv, local_batch: int
) -> ShardingPlan:
    if train.sharding == "planner":
        hbm = torch.cuda.get_device_properties(env.device).total_memory if env.device.type == "cuda" else None
        topology = Topology(
            world_size=env.world_size,
            compute_device=env.device.type,
            hbm_cap=hbm,
            local_world_size=env.local_world_size,
        )
        planner = EmbeddingShardingPlanner(topology=topology, batch_size=local_batch, debug=False)
        return planner.collective_plan(module, [sharder], torch.distributed.GroupMember.WORLD)
    per_table = (
        _hybrid(ebc, train, env.world_size)
        if train.sharding == "hybrid"
        else _uniform(ebc, train.sharding, env.world_size)
    )
    # Rank r's shards go to device r mod local_size of its node (cuda:r does not exist past the first node).
    module_plan = construct_module_sharding_plan(
        ebc, per_table, local_size=env.local_world_size, world_size=env.world_size, device_type=env.device.type
    )
    return ShardingPlan({EBC_PATH: module_plan})


def plan_rows(plan: ShardingPlan, ebc: EmbeddingBagCollection) -> list[list]:
    """One row per table: name, rows, dim, sharding type, compute kernel, ranks."""
    sizes = {t.name: (t.num_embeddings, t.embedding_dim) for t in ebc.embedding_bag_configs()}
    rows = []
    for module_plan in plan.plan.values():
        for name, spec in sorted(module_plan.items()):
            rows.append([name, *sizes.get(name, ("?", "?")), spec.sharding_type, spec.compute_kernel, spec.ranks])
    return rows


def format_plan(plan: ShardingPlan, ebc: EmbeddingBagCollection) -> str:
    from tabulate import tabulate

    return tabulate(plan_rows(plan, ebc), headers=["table", "rows", "dim", "sharding", "kernel", "ranks"])
