"""The training batch every model consumes, and random batches for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
from torchrec.streamable import Pipelineable

from wukong.schema import FeatureSchema


@dataclass
class Batch(Pipelineable):
    """One batch of B examples (pipelineable: TorchRec's train pipelines move and stream it).

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

    def record_stream(self, stream: torch.Stream) -> None:
        for tensor in (self.dense, self.labels):
            tensor.record_stream(stream)
        self.sparse.record_stream(stream)

    def pin_memory(self) -> Batch:
        return Batch(self.dense.pin_memory(), self.sparse.pin_memory(), self.labels.pin_memory(), self.row_ids)

    def padded(self, size: int) -> tuple[Batch, torch.Tensor]:
        """This batch grown to ``size`` rows with empty rows (zero dense, no ids, label 0), and the
        ``(size,)`` mask of the real ones: every rank can then run the same batch size."""
        real = len(self)
        if real > size:
            raise ValueError(f"cannot pad a batch of {real} rows to {size}")
        mask = torch.zeros(size, dtype=torch.bool)
        mask[:real] = True
        if real == size:
            return self, mask
        extra = size - real
        keys = self.sparse.keys()
        lengths = self.sparse.lengths().view(len(keys), real)
        lengths = torch.cat([lengths, lengths.new_zeros(len(keys), extra)], dim=1).reshape(-1)
        sparse = KeyedJaggedTensor(keys=keys, values=self.sparse.values(), lengths=lengths)
        dense = torch.cat([self.dense, self.dense.new_zeros(extra, self.dense.shape[1])])
        labels = torch.cat([self.labels, self.labels.new_zeros(extra)])
        return Batch(dense, sparse, labels, self.row_ids), mask


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
