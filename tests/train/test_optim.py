"""The optimizers the trainer builds: clipping and learning rate of the dense parameters."""

from __future__ import annotations

import pytest
import torch

from wukong.config import TrainConfig
from wukong.train.optim import build_optimizers


def dense_gradient_norm_after_a_step(grad_clip_norm: float) -> float:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 1))
    optimizer, _ = build_optimizers(model, TrainConfig(grad_clip_norm=grad_clip_norm))
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 10.0)  # 41 values: a global norm of 10 * sqrt(41)
    optimizer.step()
    return torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])).item()


def test_gradient_clipping_scales_the_dense_gradients_to_the_norm() -> None:
    assert dense_gradient_norm_after_a_step(0.0) == pytest.approx(10 * 41**0.5)  # off: untouched
    assert dense_gradient_norm_after_a_step(1.0) == pytest.approx(1.0, rel=1e-5)
    assert dense_gradient_norm_after_a_step(1000.0) == pytest.approx(10 * 41**0.5)  # below the norm: untouched


@pytest.mark.parametrize("grad_clip_norm", [0.0, 100.0])
def test_the_rate_in_the_dense_param_groups_is_the_one_adam_steps_with(grad_clip_norm: float) -> None:
    """The schedule writes the dense optimizer's ``param_groups`` (and history.jsonl logs them): the
    wrappers must hand that very rate to Adam, whose first step moves each weight by lr against its
    gradient's sign."""
    model = torch.nn.Linear(3, 1)
    optimizer, dense = build_optimizers(model, TrainConfig(learning_rate=1e-3, grad_clip_norm=grad_clip_norm))
    for group in dense.param_groups:
        group["lr"] = 0.25
    before = [p.detach().clone() for p in model.parameters()]
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    for old, new in zip(before, model.parameters()):
        assert torch.allclose(old - new.detach(), torch.full_like(old, 0.25), atol=1e-6)
