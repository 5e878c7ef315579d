"""``train.plateau_restore``: a plateau rewinds training to the best validation step's weights and
optimizer state. Driven in-process with scripted validation AUCs, so which validation is a plateau is
known in advance; the weights and optimizer state are the real ones of a sharded TorchRec model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.distributed._shard.sharded_tensor import ShardedTensor

from wukong.config import load_config
from wukong.train.distributed import DistEnv

pytestmark = pytest.mark.slow


def snapshot(state: dict) -> dict[str, torch.Tensor]:
    """Every tensor of a (possibly nested) state dict, copied; sharded ones as their local shards."""
    out: dict[str, torch.Tensor] = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}.{key}", inner)
        elif isinstance(value, ShardedTensor):
            out[prefix] = torch.cat([s.tensor.flatten() for s in value.local_shards()]).clone()
        elif isinstance(value, torch.Tensor):
            out[prefix] = value.detach().clone()

    visit("", state)
    return out


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run(ml_dataset: str, folder: Path, env: DistEnv, restore: bool, monkeypatch) -> dict[int, dict]:
    """Train 6 steps validating every 2, whose AUCs are scripted: 0.70 (best, step 2), 0.60, 0.65 (plateaus
    at steps 4 and 6). Returns the model's and optimizer's state after each step's validation."""
    import wukong.train.loop as loop

    aucs = iter([0.70, 0.60, 0.65])
    real = loop.compute_metrics
    monkeypatch.setattr(loop, "compute_metrics", lambda p, y: {**real(p, y), "auc": next(aucs)})
    cfg = load_config(
        "tiny",
        [
            *("train.batch_size=256", "train.max_steps=6", "train.validate_every=2", "train.warmup_steps=0"),
            *("train.plateau_factor=0.5", f"train.plateau_restore={str(restore).lower()}", "train.patience=0"),
            *("train.checkpoint_every=0", "train.learning_rate=0.01", "train.embedding_learning_rate=0.1"),
        ],
    )
    trainer = loop.Trainer(cfg, ml_dataset, str(folder), env, resume="never")
    states: dict[int, dict] = {}
    trainer.step_hooks.append(lambda: states.setdefault(trainer.progress.step, snapshot(trainer._state())))
    trainer.fit()
    return states


def test_a_plateau_rewinds_to_the_best_weights_and_optimizer_state(
    ml_dataset: str, tmp_path: Path, env: DistEnv, monkeypatch, capsys
) -> None:
    states = run(ml_dataset, tmp_path / "on", env, restore=True, monkeypatch=monkeypatch)
    assert not same(states[3], states[2])  # training moves the weights and the optimizer state
    assert same(states[4], states[2])  # the plateau at step 4 went back to step 2, the best
    assert not same(states[5], states[2])  # and training went on from there
    assert same(states[6], states[2])  # so did the second plateau
    assert "step 4: restored the weights and optimizer state of step 2" in capsys.readouterr().out


def test_without_restore_a_plateau_trains_on_from_the_current_weights(
    ml_dataset: str, tmp_path: Path, env: DistEnv, monkeypatch
) -> None:
    states = run(ml_dataset, tmp_path / "off", env, restore=False, monkeypatch=monkeypatch)
    assert not same(states[4], states[2]) and not same(states[6], states[2])
