"""What a run decides from its validations: early stopping, checkpoint retention, the exported model,
the learning-rate schedule, and refusing to overwrite an earlier run's checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from wukong.config import config_from_dict
from wukong.schema import FeatureSchema
from wukong.train.optim import lr_factor
from wukong.train.outputs import export_model

from .conftest import Run, wukong_train

pytestmark = pytest.mark.slow

LR, WARMUP, MAX_STEPS, EVERY, PATIENCE = 0.1, 10, 100, 5, 2


@pytest.fixture(scope="module")
def stopped(ml_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A run whose validation AUC stops improving: a dense learning rate this high makes the tiny model
    collapse to near-constant predictions after its first validations. A checkpoint at every validation,
    only the newest one kept (and the best)."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    run = wukong_train(
        ml_dataset,
        folder,
        *("--learning-rate", str(LR), "--warmup-steps", str(WARMUP), "--lr-schedule", "linear"),
        *("--max-steps", str(MAX_STEPS), "--validate-every", str(EVERY), "--patience", str(PATIENCE)),
        *("--checkpoint-every", str(EVERY), "--keep-checkpoints", "1", "--log-every", "1"),
    )
    assert run.returncode == 0, run.output[-3000:]
    return run


def checkpoint_steps(run: Run) -> list[int]:
    return sorted(int(p.name.removeprefix("step-")) for p in (run.folder / "checkpoints").iterdir())


def test_training_stops_after_patience_validations_without_a_better_auc(stopped: Run) -> None:
    validations = [(r["step"], r["valid"]["auc"]) for r in stopped.validations()]
    best, without_gain, expected_stop = -1.0, 0, None
    for step, auc in validations:  # the rule, restated: stop at the PATIENCE-th validation in a row without gain
        best, without_gain = (auc, 0) if auc > best else (best, without_gain + 1)
        if without_gain == PATIENCE:
            expected_stop = step
            break
    assert expected_stop is not None and expected_stop < MAX_STEPS, f"the AUC should stop improving: {validations}"
    card = stopped.card()
    assert card["stopped_early"] is True and card["steps"] == expected_stop
    assert [step for step, _ in validations] == list(range(EVERY, expected_stop + 1, EVERY))
    assert card["best_step"] == max(validations, key=lambda v: v[1])[0] < expected_stop


def test_pruning_keeps_the_newest_checkpoint_and_the_best(stopped: Run) -> None:
    card = stopped.card()
    assert checkpoint_steps(stopped) == [card["best_step"], card["steps"]]  # keep 1 + the best; the rest removed


def test_the_exported_model_is_the_best_steps(stopped: Run) -> None:
    card = stopped.card()
    cfg, schema = config_from_dict(card["config"], "model_card.json"), FeatureSchema.from_dict(card["schema"])
    exported = torch.load(stopped.folder / "model.pt", weights_only=True)

    def weights(step: int) -> dict[str, torch.Tensor]:
        return export_model(stopped.folder / "checkpoints" / f"step-{step:09d}", card["model"], schema, cfg)

    best, last = weights(card["best_step"]), weights(card["steps"])
    assert exported.keys() == best.keys()
    assert all(torch.equal(exported[k], best[k]) for k in best)
    assert not all(torch.equal(exported[k], last[k]) for k in last), "the last step's weights should differ"
    assert stopped.card()["metrics"]["valid"]["auc"] == max(r["valid"]["auc"] for r in stopped.validations())


def test_the_logged_learning_rate_follows_the_schedule(stopped: Run) -> None:
    logged = [(r["step"], r["lr"]) for r in stopped.history() if "loss" in r]
    assert [step for step, _ in logged] == list(range(1, stopped.card()["steps"] + 1))
    # Step s trains with the factor of the s-1 steps done before it: warm-up, then linear decay.
    expected = [LR * lr_factor(step - 1, WARMUP, MAX_STEPS, "linear") for step, _ in logged]
    assert [lr for _, lr in logged] == pytest.approx(expected, rel=1e-9)
    assert max(expected) == pytest.approx(LR) and expected[0] == pytest.approx(LR / WARMUP) and expected[-1] < LR


def test_resume_never_refuses_an_output_with_checkpoints(stopped: Run, ml_dataset: str, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(stopped.folder, folder)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    refused = wukong_train(ml_dataset, folder, "--resume", "never", "--max-steps", "5")
    assert refused.returncode == 2, refused.output[-2000:]
    errors = [line for line in refused.output.splitlines() if line.startswith("wukong train:")]
    assert len(errors) == 1 and "holds checkpoints of an earlier run; use --resume auto" in errors[0]
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
