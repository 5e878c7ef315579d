"""Predictions over a whole split, every rank reading its share, gathered on every rank."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from wukong.data.batch import Batch
from wukong.data.reader import DatasetReader


@torch.no_grad()
def predict(
    logits_of: Callable[[Batch], torch.Tensor], reader: DatasetReader, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, labels) of every row of ``reader``'s split, in rank order, on every rank.

    Batches are padded to the reader's batch size, so every rank runs identical shapes through the
    sharded model (uneven shapes would break TorchRec's collectives); padded rows are dropped.
    """
    probabilities, labels = [], []
    for batch in reader:
        padded, mask = batch.padded(reader.batch_size)
        logits = logits_of(padded.to(device)).float().cpu()
        probabilities.append(torch.sigmoid(logits)[mask])
        labels.append(batch.labels)
    local = torch.stack([torch.cat(probabilities), torch.cat(labels)]) if probabilities else torch.zeros(2, 0)
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return local[0], local[1]
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor([local.shape[1]]))
    longest = max(int(c) for c in counts)
    padded = torch.zeros(2, longest)
    padded[:, : local.shape[1]] = local
    gathered = [torch.zeros(2, longest) for _ in counts]
    dist.all_gather(gathered, padded)
    merged = torch.cat([g[:, : int(c)] for g, c in zip(gathered, counts)], dim=1)
    return merged[0], merged[1]
