"""train.compile: the dense arch under torch.compile agrees with eager, falls back when compiling fails,
and leaves the model's state (parameters' names, buffers, RNG) as eager training would."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from wukong.config import Config, ConfigError, load_config
from wukong.model.build import build_arch, build_model
from wukong.schema import FeatureSchema
from wukong.train.compile import DenseArch
from wukong.train.module import TrainModule

from .conftest import wukong_train


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    """Each test compiles from scratch (dynamo caches per code object, and these tests vary the backend)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def failing_backend(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
    raise RuntimeError("no code generator here")


def tiny_arch(tiny: Config, **changes) -> nn.Module:
    return build_arch("wukong", 7, dataclasses.replace(tiny.model, **changes))


def forward_backward(call, arch: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.detach().requires_grad_(True)
    out = call(x)
    grads = torch.autograd.grad(out.pow(2).sum(), [x, *arch.parameters()])
    return out.detach(), list(grads)


@pytest.mark.slow
def test_compiled_arch_matches_eager_outputs_and_gradients(tiny: Config) -> None:
    arch = tiny_arch(tiny)
    compiled = DenseArch(arch, "dense", log=lambda message: None)
    x = torch.randn(32, 7, tiny.model.embedding_dim)
    expected, expected_grads = forward_backward(arch, arch, x)
    out, grads = forward_backward(compiled, arch, x)
    assert compiled.active  # it did run compiled, not fall back
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-4, atol=1e-5)


def test_failed_compilation_falls_back_to_eager_with_one_log_line(tiny: Config) -> None:
    arch = tiny_arch(tiny)
    lines: list[str] = []
    dense = DenseArch(arch, "dense", log=lines.append, backend=failing_backend)
    x = torch.randn(4, 7, tiny.model.embedding_dim)
    out = dense(x)
    assert not dense.active
    assert len(lines) == 1 and "failed" in lines[0] and "eager" in lines[0] and "no code generator" in lines[0]
    torch.testing.assert_close(out, arch(x))
    dense(x)
    assert len(lines) == 1  # said once


def test_warm_up_failure_is_reported_before_training(tiny: Config) -> None:
    lines: list[str] = []
    dense = DenseArch(tiny_arch(tiny), "dense", log=lines.append, backend=failing_backend)
    dense.warm_up(torch.randn(4, 7, tiny.model.embedding_dim))
    assert not dense.active and len(lines) == 1 and "failed" in lines[0]


def test_warm_up_leaves_no_trace(tiny: Config) -> None:
    """Buffers (BatchNorm statistics), parameter gradients, the RNG and the train/eval mode are as before."""
    arch = tiny_arch(tiny, mlp_norm="batchnorm", mlp_dropout=0.5)
    arch.eval()
    before = {name: b.clone() for name, b in arch.named_buffers()}
    assert before, "the test needs a model with buffers"
    lines: list[str] = []
    dense = DenseArch(arch, "dense", log=lines.append, backend="eager")  # dynamo's tracing, no code generation
    example = torch.randn(8, 7, tiny.model.embedding_dim)
    rng = torch.random.get_rng_state()
    dense.warm_up(example)
    assert dense.active and "compiled" in lines[0]
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert not arch.training
    assert all(p.grad is None for p in arch.parameters())
    for name, b in arch.named_buffers():
        assert torch.equal(b, before[name]), name


def test_eval_mode_and_tracing_run_eager(tiny: Config) -> None:
    calls: list[int] = []

    def counting_backend(graph: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        calls.append(1)
        return graph.forward

    arch = tiny_arch(tiny)
    dense = DenseArch(arch, "dense", log=lambda message: None, backend=counting_backend)
    x = torch.randn(4, 7, tiny.model.embedding_dim)
    arch.eval()
    dense(x)
    assert not calls  # validation and prediction: eager
    arch.train()
    dense(x)
    assert calls  # training steps: compiled


def test_compiling_keeps_the_state_dict_names(tiny: Config, tiny_schema: FeatureSchema) -> None:
    eager = TrainModule(build_model("wukong", tiny_schema, tiny.model), compile="none")
    compiled = TrainModule(build_model("wukong", tiny_schema, tiny.model), compile="dense")
    assert list(compiled.state_dict()) == list(eager.state_dict())


def test_compile_setting_is_checked() -> None:
    assert load_config("tiny", ["train.compile=dense"]).train.compile == "dense"
    with pytest.raises(ConfigError, match="compile"):
        load_config("tiny", ["train.compile=everything"])


@pytest.mark.slow
def test_wukong_train_runs_compiled(ml_dataset: str, tmp_path: Path) -> None:
    """The real CLI with the sparse-dist pipeline: the arch compiles up front, then trains and exports."""
    run = wukong_train(ml_dataset, tmp_path / "run", "--max-steps", "4", "--compile", "dense", timeout=600)
    assert run.returncode == 0, run.output[-3000:]
    assert "train.compile=dense: compiled the dense arch" in run.output
    assert "torch.compile of the dense arch failed" not in run.output
    assert all(math.isfinite(r["loss"]) for r in run.history() if "loss" in r)
    assert (tmp_path / "run" / "model_card.json").is_file()
