"""Predictions over a whole split, every rank reading its share, gathered on every rank."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.distributed as dist

from wukong.data.batch import Batch
from wukong.data.reader import DatasetReader
from wukong.train.distributed import collective_device


class Predictions(NamedTuple):
    """Every row of a split: ``(N,)`` probabilities, labels and the rows' ids in their dataset."""

    probabilities: torch.Tensor
    labels: torch.Tensor
    row_ids: torch.Tensor


@torch.no_grad()
def predict(logits_of: Callable[[Batch], torch.Tensor], reader: DatasetReader, device: torch.device) -> Predictions:
    """Probabilities, labels and row ids of every row of ``reader``'s split, in rank order, on every rank.

    Batches are padded to the reader's batch size, so every rank runs identical shapes through the
    sharded model (uneven shapes would break TorchRec's collectives); padded rows are dropped.
    """
    probabilities, labels, row_ids = [], [], []
    for batch in reader:
        padded, mask = batch.padded(reader.batch_size)
        logits = logits_of(padded.to(device)).float().cpu()
        probabilities.append(torch.sigmoid(logits)[mask])
        labels.append(batch.labels)
        row_ids.append(batch.row_ids)
    local = Predictions(_cat(probabilities, torch.float32), _cat(labels, torch.float32), _cat(row_ids, torch.int64))
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return local
    return Predictions(*(_gather(part) for part in local))


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)


def _gather(local: torch.Tensor) -> torch.Tensor:
    """The concatenation, in rank order, of every rank's ``local`` (1-D, lengths may differ).

    The collectives run on the device the process group serves (the GPU under NCCL, which refuses
    CPU tensors); the result is on the CPU.
    """
    device = collective_device()
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([len(local)], device=device))
    longest = max(int(c) for c in counts)
    padded = local.new_zeros(longest, device=device)
    padded[: len(local)] = local.to(device)
    gathered = [padded.new_zeros(longest) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(c)] for g, c in zip(gathered, counts)]).cpu()
