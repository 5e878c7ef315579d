"""The training batch every model consumes, and random batches for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from wukong.schema import FeatureSchema


@dataclass
class Batch:
    """One batch of B examples.

    Attributes:
        dense: ``(B, num_dense)`` float features.
        sparse: ids of every sparse feature, keyed by feature name (``KeyedJaggedTensor``).
        labels: ``(B,)`` float in ``{0, 1}``.
        row_ids: ``(B,)`` int64 ids of the rows in their dataset (None for generated batches).
    """

    dense: torch.Tensor
    sparse: KeyedJaggedTensor
    labels: torch.Tensor
    row_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.labels.numel()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.dense.to(device, non_blocking=non_blocking),
            self.sparse.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.row_ids,
        )


def random_batch(
    schema: FeatureSchema, batch_size: int, generator: torch.Generator | None = None, max_multi_hot: int = 4
) -> Batch:
    """A batch of uniformly random features: one id per single-hot feature, 0..max_multi_hot per multi-hot."""
    dense = torch.rand(batch_size, len(schema.dense), generator=generator)
    lengths = [
        torch.randint(0, max_multi_hot + 1, (batch_size,), generator=generator)
        if f.multi_hot
        else torch.ones(batch_size, dtype=torch.long)
        for f in schema.sparse
    ]
    values = [
        torch.randint(0, f.cardinality, (int(n.sum()),), generator=generator) for f, n in zip(schema.sparse, lengths)
    ]
    sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=schema.sparse_names,
        values=torch.cat(values) if values else torch.empty(0, dtype=torch.long),
        lengths=torch.cat(lengths) if lengths else torch.empty(0, dtype=torch.long),
    )
    labels = torch.randint(0, 2, (batch_size,), generator=generator).float()
    return Batch(dense, sparse, labels)
