"""The module TorchRec shards and the train pipeline drives: a ranking model plus its loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.autograd.profiler import record_function

from wukong.data.batch import Batch
from wukong.model import RankingModel
from wukong.train.compile import DenseArch
from wukong.train.precision import autocast


class TrainModule(nn.Module):
    r"""``forward(batch) -> (objective, (log loss, logits, labels))``, the pair TorchRec's pipelines expect.

    .. math::
        \mathcal{L} = \mathrm{BCE}(\hat y, y) + \lambda \cdot \frac1B \sum_{b=1}^{B} \sum_{f} \lVert e_{b,f} \rVert^2

    where ``e_{b,f}`` is example b's pooled embedding of sparse feature f and ``λ = embedding_l2``
    (0: no penalty). The penalty reaches every table, sharded or replicated, through its gradient
    ``2λ e / B``, and only rows looked up in the batch. Backward runs on ``L``; the reported loss
    (logged, checked for divergence) is the BCE alone, comparable across settings.

    With ``precision="bf16"`` the interaction arch runs under bf16 autocast on ``device_type``
    (the device the module is sharded to); embeddings, loss and optimizer states stay fp32
    (:mod:`wukong.train.precision`).

    With ``compile="dense"`` training steps run the arch through ``torch.compile`` (:mod:`wukong.train.compile`;
    call :meth:`warm_up` once the model is materialised). The forward's phases carry profiler labels
    (``wukong.embedding``, ``wukong.dense_forward``), free when no profiler runs.
    """

    def __init__(
        self,
        model: RankingModel,
        precision: str = "fp32",
        device_type: str = "cpu",
        embedding_l2: float = 0.0,
        compile: str = "none",
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__()
        self.model = model
        self.precision, self.device_type = precision, device_type
        self.embedding_l2 = embedding_l2
        self.dense = DenseArch(model.arch, compile, log)

    def warm_up(self, batch_size: int, device: torch.device) -> None:
        """Compile the dense arch now for batches of ``batch_size`` (nothing when ``compile="none"``),
        on random embeddings of its own generator: the run's random stream is the same in both modes."""
        if not self.dense.active:
            return
        embedding = self.model.embedding
        generator = torch.Generator(device).manual_seed(0)
        shape = (batch_size, embedding.num_features, embedding.dim)
        example = torch.randn(shape, device=device, generator=generator)
        self.dense.warm_up(example, autocast(self.precision, device.type))

    def forward(self, batch: Batch) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        with record_function("wukong.embedding"):
            x = self.model.embedding(batch.dense, batch.sparse)
        with record_function("wukong.dense_forward"):
            with autocast(self.precision, self.device_type):
                logits = self.dense(x).float()
            loss = nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
            objective = loss
            if self.embedding_l2 > 0:
                sparse_rows = x[:, self.model.embedding.num_dense_embeddings :]
                objective = loss + self.embedding_l2 * sparse_rows.pow(2).sum(dim=(1, 2)).mean()
        return objective, (loss.detach(), logits.detach(), batch.labels)
