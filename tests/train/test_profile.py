"""The step profile (wukong.train.profile): phases that partition each profiled step, labelled as the
trainer and TorchRec's pipeline label them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile, schedule

from wukong.config import load_config
from wukong.train.distributed import DistEnv
from wukong.train.profile import PHASES, attribute, format_ops, format_profile, op_name, phase_of, profile_fit


def labelled_step(weight: torch.Tensor, validate: bool) -> None:
    """A step shaped like the trainer's: input, forward, backward, optimizer; sometimes a validation."""
    with record_function("## copy_batch_to_gpu 0 ##"):
        x = torch.randn(32, 16)
    with record_function("wukong.dense_forward"):
        loss = (x @ weight).relu().sum()
    with record_function("## backward 0 ##"):
        loss.backward()
    with record_function("## optimizer 0 ##"), torch.no_grad():
        weight.sub_(0.1 * weight.grad)
        weight.grad = None
    with record_function("wukong.log"):
        loss.item()
    if validate:
        with record_function("wukong.validate"):
            with record_function("wukong.dense_forward"), torch.no_grad():
                (x @ weight).sigmoid()
            with record_function("wukong.checkpoint"):
                weight.detach().clone()


def test_phases_add_up_to_the_steps_and_follow_the_labels() -> None:
    weight = torch.randn(16, 8, requires_grad=True)
    traces = []
    with profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=0, warmup=1, active=3, repeat=1),
        on_trace_ready=lambda prof: traces.append(attribute(prof.events())),
    ) as prof:
        for step in range(4):
            labelled_step(weight, validate=step == 3)
            prof.step()
    result = traces[0]
    assert result.steps == 3
    assert result.total_ms == pytest.approx(result.step_ms, rel=1e-6)
    assert "aten::mm" in result.ops["dense_forward"]
    assert "aten::randn" in result.ops["input"]
    assert any("Backward" in op for op in result.ops["dense_backward"])
    assert "aten::sub_" in result.ops["optimizer"]
    assert "aten::item" in result.ops["logging"]
    assert "aten::sigmoid" in result.ops["validation"]  # a validation's forward is validation, not training
    assert "aten::sigmoid" not in result.ops["dense_forward"]
    assert "aten::clone" in result.ops["checkpoints"]
    assert not result.ops["embedding"] and not result.ops["embedding_backward"]
    table = format_profile([("run", result)])
    assert all(description in table for _, description in PHASES) and "**total**" in table
    # every op (which five take longest on a tiny model is the machine's noise)
    assert "aten::mm" in format_ops([("run", result)], count=50)


def test_backward_parts_go_to_their_own_phases() -> None:
    fused = "fbgemm::split_embedding_backward_codegen_rowwise_adagrad_cpu"
    assert phase_of(fused, "dense_backward") == "embedding_backward"
    assert phase_of("torch::distributed::reducer::mul_out", "dense_backward") == "grad_sync"
    assert phase_of("aten::mm", "dense_backward") == "dense_backward"
    assert phase_of(fused, "other") == "other"  # only inside a backward pass
    assert phase_of("## forward 3 ##", "other") == "other"
    assert phase_of("wukong.embedding", "other") == "embedding"
    assert phase_of("wukong.checkpoint", "validation") == "checkpoints"


def test_a_run_without_steps_is_refused() -> None:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.ones(3).sum()
    with pytest.raises(ValueError, match=r"prof\.step\(\)"):
        attribute(prof.events())


@pytest.fixture
def env() -> Iterator[DistEnv]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield DistEnv(0, 1, 0, torch.device("cpu"), "gloo")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", [True, False])
def test_profile_of_real_training_steps(ml_dataset: str, tmp_path: Path, env: DistEnv, pipeline: bool) -> None:
    from wukong.train.loop import Trainer

    cfg = load_config("tiny", ["train.batch_size=256", "train.max_steps=3", f"train.pipeline={pipeline}"])
    result = profile_fit(Trainer(cfg, ml_dataset, str(tmp_path / "run"), env, resume="never"), skip=1, steps=2)
    assert result.steps == 2
    assert result.total_ms == pytest.approx(result.step_ms, rel=1e-6)
    for phase in ("input", "embedding", "dense_forward", "dense_backward", "embedding_backward", "optimizer"):
        assert result.ms[phase] > 0, phase
    assert result.ms["validation"] > 0  # the last step validates


def test_op_names_merge_numbered_labels_and_compiled_graphs() -> None:
    assert op_name("## backward 12 ##") == op_name("## backward 3 ##") == "## backward ##"
    assert op_name("## Call CompiledFxGraph fab12 ##") == op_name("## Call CompiledFxGraph f99 ##")
    assert op_name("aten::mm") == "aten::mm"
