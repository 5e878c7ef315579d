"""The module TorchRec shards and the train pipeline drives: a ranking model plus its loss."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from wukong.data.batch import Batch
from wukong.model import RankingModel


class TrainModule(nn.Module):
    r"""``forward(batch) -> (objective, (log loss, logits, labels))``, the pair TorchRec's pipelines expect.

    .. math::
        \mathcal{L} = \mathrm{BCE}(\hat y, y) + \lambda \cdot \frac1B \sum_{b=1}^{B} \sum_{f} \lVert e_{b,f} \rVert^2

    where ``e_{b,f}`` is example b's pooled embedding of sparse feature f and ``λ = embedding_l2``
    (0: no penalty). The penalty reaches every table, sharded or replicated, through its gradient
    ``2λ e / B``, and only rows looked up in the batch. Backward runs on ``L``; the reported loss
    (logged, checked for divergence) is the BCE alone, comparable across settings.

    With ``bf16=True`` (GPUs) the interaction arch runs under bf16 autocast; embeddings, loss and
    optimizer states stay fp32. CPUs train in fp32 (bf16 matmuls are far slower there without AMX).
    """

    def __init__(self, model: RankingModel, bf16: bool = False, embedding_l2: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.bf16 = bf16
        self.embedding_l2 = embedding_l2

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        x = self.model.embedding(batch.dense, batch.sparse)
        precision = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with precision:
            logits = self.model.arch(x).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
        objective = loss
        if self.embedding_l2 > 0:
            sparse_rows = x[:, self.model.embedding.num_dense_embeddings :]
            objective = loss + self.embedding_l2 * sparse_rows.pow(2).sum(dim=(1, 2)).mean()
        return objective, (loss.detach(), logits.detach(), batch.labels)
