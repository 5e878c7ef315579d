"""``train.precision``: the interaction arch's products in bf16 under autocast, everything else fp32."""

from __future__ import annotations

import pytest
import torch

from wukong.config import Config, ConfigError, load_config
from wukong.data.batch import random_batch
from wukong.model import build_model
from wukong.schema import FeatureSchema
from wukong.train import precision
from wukong.train.module import TrainModule


def linear_output_dtypes(module: TrainModule, batch) -> tuple[set[torch.dtype], torch.Tensor, torch.Tensor]:
    """The dtypes every ``nn.Linear`` of the arch produced in one training forward, the objective and logits."""
    seen: set[torch.dtype] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        for m in module.model.arch.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    objective, (_, logits, _) = module(batch)
    for hook in hooks:
        hook.remove()
    return seen, objective, logits


def test_bf16_runs_the_arch_products_in_bf16_and_keeps_the_rest_fp32(tiny: Config, tiny_schema: FeatureSchema) -> None:
    batch = random_batch(tiny_schema, 64, torch.Generator().manual_seed(0))
    model = build_model("wukong", tiny_schema, tiny.model)
    runs = {}
    for name in ("fp32", "bf16"):
        module = TrainModule(model, precision=name, device_type="cpu")
        model.zero_grad(set_to_none=True)
        dtypes, objective, logits = linear_output_dtypes(module, batch)
        objective.backward()
        runs[name] = (dtypes, objective.detach(), logits)
        grads = [p.grad for p in model.arch.parameters() if p.grad is not None]
        assert grads and all(g.dtype == torch.float32 for g in grads)  # fp32 weights get fp32 gradients
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert runs["fp32"][0] == {torch.float32}
    assert runs["bf16"][0] == {torch.bfloat16}
    assert runs["bf16"][1].dtype == runs["bf16"][2].dtype == torch.float32  # loss and logits in fp32
    # The same model in both: close (bf16 keeps 8 bits of mantissa), but not the same numbers.
    torch.testing.assert_close(runs["bf16"][2], runs["fp32"][2], atol=0.05, rtol=0.05)
    assert not torch.equal(runs["bf16"][2], runs["fp32"][2])


def test_auto_is_bf16_on_gpus_and_fp32_on_cpus() -> None:
    assert precision.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert precision.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert precision.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert precision.resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_bf16_on_a_cpu_without_amx_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert "without AMX" in precision.precision_note("bf16", cpu)
    assert precision.precision_note("fp32", cpu) is None
    assert precision.precision_note("bf16", torch.device("cuda")) is None
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.precision_note("bf16", cpu) is None


def test_precision_setting_is_checked() -> None:
    assert load_config("tiny", ["train.precision=bf16"]).train.precision == "bf16"
    assert load_config("tiny").train.precision == "auto"
    with pytest.raises(ConfigError, match=r"train.precision must be one of auto, fp32, bf16, got 'fp16'"):
        load_config("tiny", ["train.precision=fp16"])
