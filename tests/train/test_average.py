"""``train.ema_decay``: an exponential moving average of the dense weights is what validation, checkpoints
and the exported model see, while training steps the raw weights, and a resumed run averages on exactly
as an uninterrupted one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from wukong.config import ConfigError, load_config
from wukong.train.average import WeightAverage
from wukong.train.distributed import DistEnv


def expected_average(start: dict[str, torch.Tensor], steps: list[dict[str, torch.Tensor]], decay: float) -> dict:
    """The docstring's recurrence, written out: a_t = β_t a_{t-1} + (1 - β_t) w_t, β_t = min(β, (t-1)/t)."""
    average = {k: v.clone() for k, v in start.items()}
    for t, weights in enumerate(steps, start=1):
        beta = min(decay, (t - 1) / t)
        average = {k: beta * average[k] + (1 - beta) * weights[k] for k in average}
    return average


# ---- the average on its own -------------------------------------------------------------------------
def test_the_average_follows_the_recurrence_and_swaps_in_and_out() -> None:
    layer = torch.nn.Linear(3, 2)
    params = dict(layer.named_parameters())
    start = {k: v.detach().clone() for k, v in params.items()}
    average = WeightAverage(params, decay=0.5)
    seen = []
    for _ in range(4):
        with torch.no_grad():
            for p in params.values():
                p.add_(torch.randn_like(p))
        seen.append({k: v.detach().clone() for k, v in params.items()})
        average.update(len(seen))
    want = expected_average(start, seen, 0.5)
    w = [step["weight"] for step in seen]  # β_t = 0, 1/2, 1/2, 1/2: the mean of w1, w2, then halving
    torch.testing.assert_close(want["weight"], 0.125 * (w[0] + w[1]) + 0.25 * w[2] + 0.5 * w[3])
    raw = seen[-1]
    with pytest.raises(KeyError), average.applied_weights():
        for k, p in params.items():
            torch.testing.assert_close(p.detach(), want[k])  # the averages, in the parameters themselves
        with pytest.raises(RuntimeError, match="training must not step the averaged weights"):
            average.update(5)
        raise KeyError("an error inside")
    for k, p in params.items():  # back to the raw weights, even after the error
        assert torch.equal(p.detach(), raw[k])
    assert average.decay_at(1) == 0 and average.decay_at(2) == 0.5 and average.decay_at(10_000) == 0.5


@pytest.mark.parametrize("decay", ["1", "-0.1"])
def test_a_decay_outside_zero_to_one_is_refused(decay: str) -> None:
    with pytest.raises(ConfigError, match=re.escape("train.ema_decay must be in [0, 1)")):
        load_config("tiny", [f"train.ema_decay={decay}"])


# ---- in the trainer ----------------------------------------------------------------------------------
DECAY = 0.9


def trainer(ml_dataset: str, folder: Path, env: DistEnv, steps: int, *overrides: str):
    from wukong.train.loop import Trainer

    cfg = load_config(
        "tiny",
        [
            *("train.batch_size=256", f"train.max_steps={steps}", "train.validate_every=3", "train.warmup_steps=0"),
            *("train.checkpoint_every=3", "train.learning_rate=0.01", f"train.ema_decay={DECAY}", *overrides),
        ],
    )
    return Trainer(cfg, ml_dataset, str(folder), env, resume="auto")


def exported_key(name: str) -> str:
    """A parameter of the sharded training module as model.pt names it (``dense_arch.…``)."""
    return name[name.index("model.") + len("model.") :]


@pytest.mark.slow
def test_validation_and_the_exported_model_use_the_averaged_weights(
    ml_dataset: str, tmp_path: Path, env: DistEnv
) -> None:
    t = trainer(ml_dataset, tmp_path / "run", env, 6)
    start = {k: p.detach().clone() for k, p in t.average.params.items()}
    raw: list[dict[str, torch.Tensor]] = []
    t.step_hooks.append(lambda: raw.append({k: p.detach().clone() for k, p in t.average.params.items()}))
    t.fit()
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())
    exported = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    want = expected_average(start, raw[: best["step"]], DECAY)
    for name, value in want.items():
        torch.testing.assert_close(exported[exported_key(name)], value)
    differs = [name for name in want if not torch.allclose(want[name], raw[best["step"] - 1][name])]
    assert differs, "the average equals the raw weights: the test cannot tell them apart"

    from wukong.cli import main

    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(tmp_path / "run"), "--data", ml_dataset, "--split", "valid"]
    assert main([*argv, "--output", str(out)]) == 0
    # The exported (averaged) model scores on the validation split what validation recorded for its step.
    assert json.loads((out / "metrics.json").read_text())["auc"] == pytest.approx(best["auc"], abs=1e-6)


@pytest.mark.slow
def test_a_resumed_run_averages_on_as_an_uninterrupted_one(ml_dataset: str, tmp_path: Path, env: DistEnv) -> None:
    trainer(ml_dataset, tmp_path / "whole", env, 6).fit()
    trainer(ml_dataset, tmp_path / "resumed", env, 3).fit()
    trainer(ml_dataset, tmp_path / "resumed", env, 6).fit()  # from checkpoint 3: raw weights, averages apart

    def validations(run: str) -> dict[int, dict]:
        lines = (tmp_path / run / "history.jsonl").read_text().splitlines()
        return {r["step"]: r["valid"] for r in map(json.loads, lines) if "valid" in r}

    # Step 6's validation sees the average of steps 1-6, after training on from the raw weights of step 3.
    assert validations("whole").keys() == {3, 6} and validations("resumed") == validations("whole")
    whole = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)


@pytest.mark.slow
def test_resuming_a_run_without_an_average_starts_one_from_its_weights(
    ml_dataset: str, tmp_path: Path, env: DistEnv, capsys: pytest.CaptureFixture
) -> None:
    trainer(ml_dataset, tmp_path / "run", env, 3, "train.ema_decay=0").fit()
    t = trainer(ml_dataset, tmp_path / "run", env, 6)
    assert "checkpoint step 3 holds no weight average: train.ema_decay starts one from it" in capsys.readouterr().out
    for name, p in t.average.params.items():
        assert torch.equal(t.average.averages[name], p.detach())
    t.fit()
