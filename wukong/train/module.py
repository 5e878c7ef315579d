"""The module TorchRec shards and the train pipeline drives: a ranking model plus its loss."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from wukong.data.batch import Batch
from wukong.model import RankingModel


class TrainModule(nn.Module):
    """``forward(batch) -> (loss, (loss, logits, labels))``, the pair TorchRec's pipelines expect.

    With ``bf16=True`` (GPUs) the interaction arch runs under bf16 autocast; embeddings, loss and
    optimizer states stay fp32. CPUs train in fp32 (bf16 matmuls are far slower there without AMX).
    """

    def __init__(self, model: RankingModel, bf16: bool = False) -> None:
        super().__init__()
        self.model = model
        self.bf16 = bf16

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        x = self.model.embedding(batch.dense, batch.sparse)
        precision = torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with precision:
            logits = self.model.arch(x).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
        return loss, (loss.detach(), logits.detach(), batch.labels)
