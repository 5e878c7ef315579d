"""Replicated tables trained by their embedding optimizer (wukong.train.replicated), through real TorchRec
sharding (DistributedModelParallel, a world of one), and the row-wise Adagrad rule they share with FBGEMM."""

from __future__ import annotations

import pytest
import torch

from wukong.config import Config, ConfigError, EmbeddingGroupConfig, TrainConfig, load_config
from wukong.data.batch import random_batch
from wukong.train.distributed import DistEnv
from wukong.train.optim import LearningRates, embedding_optimizers
from wukong.train.replicated import EPS, RowWiseAdagrad

from .test_knobs import PLAN, SCHEMA, shard


def test_rowwise_adagrad_follows_fbgemms_rule_and_leaves_untouched_rows() -> None:
    weight = torch.nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    optimizer = RowWiseAdagrad([weight], lr=0.5)
    grads = [torch.tensor([[0.3, -0.4], [0.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.0, 0.0]])]
    expected, momentum = weight.detach().clone(), torch.zeros(3, 1)
    for grad in grads:
        weight.grad = grad
        optimizer.step()
        momentum += grad.square().mean(dim=1, keepdim=True)
        expected -= 0.5 * grad / (momentum.sqrt() + EPS)
        torch.testing.assert_close(weight.detach(), expected)
    assert torch.equal(weight.detach()[1], torch.tensor([3.0, 4.0]))  # never looked up: as it was


@pytest.mark.parametrize("decoupled", [False, True])
def test_rowwise_adagrad_decays_only_the_rows_of_the_batch(decoupled: bool) -> None:
    weight = torch.nn.Parameter(torch.ones(2, 2))
    optimizer = RowWiseAdagrad([weight], lr=0.1, weight_decay=0.5, decoupled=decoupled)
    weight.grad = torch.tensor([[0.2, 0.2], [0.0, 0.0]])
    optimizer.step()
    grad = torch.tensor([0.2, 0.2]) if decoupled else torch.tensor([0.7, 0.7])  # l2: g + wd·w
    start = 1 - 0.1 * 0.5 if decoupled else 1.0
    torch.testing.assert_close(weight.detach()[0], start - 0.1 * grad / (grad.square().mean().sqrt() + EPS))
    assert torch.equal(weight.detach()[1], torch.ones(2))


def step_through_the_model(sharded, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training step of the sharded model; returns the replicated table `small` before, after, and its gradient."""
    (name, table), *others = [(n, p) for n, p in sharded.dmp.named_parameters() if "t_small" in n]
    assert not others, name
    before = table.detach().clone()
    sharded.optimizer.zero_grad()
    objective, _ = sharded.dmp(random_batch(SCHEMA, batch_size, torch.Generator().manual_seed(0)))
    objective.backward()
    grad = table.grad.detach().clone()
    sharded.optimizer.step()
    return before, table.detach().clone(), grad


def test_a_replicated_table_learns_by_the_embedding_optimizer(env: DistEnv, tiny: Config) -> None:
    train = TrainConfig(**PLAN, learning_rate=1e-3, embedding_learning_rate=0.5)
    sharded = shard(env, train, tiny)
    assert sharded.dmp.plan.plan["model.embedding.ebc"]["t_small"].sharding_type == "data_parallel"
    assert [key for key, _ in sharded.optimizer.optimizers] == ["sparse", "dense", "replicated"]
    before, after, grad = step_through_the_model(sharded)
    expected = before - 0.5 * grad / (grad.square().mean(dim=1, keepdim=True).sqrt() + EPS)
    torch.testing.assert_close(after, expected)
    assert (after - before).abs().max() > 0.1  # the embedding rate, not Adam's 1e-3


def test_replicated_tables_dense_restores_adam(env: DistEnv, tiny: Config) -> None:
    train = TrainConfig(**PLAN, learning_rate=1e-3, embedding_learning_rate=0.5, replicated_tables="dense")
    sharded = shard(env, train, tiny)
    assert [key for key, _ in sharded.optimizer.optimizers] == ["sparse", "dense"]
    before, after, grad = step_through_the_model(sharded)
    moved = (after - before)[grad != 0].abs()
    assert moved.max() == pytest.approx(1e-3, rel=1e-4)  # Adam's first step: lr·g/(|g| + eps), at most lr
    assert moved.max() <= 1e-3 * (1 + 1e-6)


def test_a_replicated_table_takes_its_groups_optimizer_and_the_schedule(env: DistEnv, tiny: Config) -> None:
    group = EmbeddingGroupConfig(features=["small"], optimizer="sgd", learning_rate=0.3)
    train = TrainConfig(**PLAN, embedding_learning_rate=0.5, embedding_groups=[group], warmup_steps=0)
    sharded = shard(env, train, tiny)
    rates = LearningRates(sharded.dense, embedding_optimizers(sharded.optimizer), train, total_steps=10)
    rates.apply(step=0, plateau=0.1)  # one plateau: every rate ×0.1, the replicated table's too
    before, after, grad = step_through_the_model(sharded)
    torch.testing.assert_close(after, before - 0.03 * grad)  # SGD at the group's 0.3, ×0.1


def test_replicated_tables_setting_is_checked() -> None:
    assert load_config("tiny", ["train.replicated_tables=dense"]).train.replicated_tables == "dense"
    with pytest.raises(ConfigError, match="replicated_tables"):
        load_config("tiny", ["train.replicated_tables=adam"])
