"""``wukong tune``: search spaces, seeded and resumable rounds, the best preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from wukong.cli import main
from wukong.config import ConfigError, load_config
from wukong.experiments.space import SearchSpace
from wukong.experiments.tune import Tuner, configuration_key

from .conftest import QUICK

SPACE = {
    "train.learning_rate": {"loguniform": [1.0e-4, 1.0e-2]},
    "model.dlrm.top_mlp": {"choice": [[32, 16], [64]]},
    "models": {"wukong": {"model.num_layers": {"int": [1, 3]}}},
}


def test_space_yaml_per_model_keys_and_override_text(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    assert [p.key for p in SearchSpace.load(path, "dlrm").parameters] == ["train.learning_rate", "model.dlrm.top_mlp"]
    space = SearchSpace.load(path, "wukong")
    assert space.parameters[-1].key == "model.num_layers"
    params = {"train.learning_rate": 0.002, "model.dlrm.top_mlp": "[32, 16]", "model.num_layers": 2}
    overrides = space.overrides(params)
    cfg = load_config("tiny", overrides)
    assert (cfg.train.learning_rate, cfg.model.dlrm.top_mlp, cfg.model.num_layers) == (0.002, [32, 16], 2)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"model.no_such_key": {"uniform": [0, 1]}}, "unknown key 'model.no_such_key'"),
        ({"train.learning_rate": {"normal": [0, 1]}}, "expected one of"),
        ({"train.learning_rate": {"loguniform": [0, 1]}}, "low > 0"),
        ({"model.num_layers": {"int": [0, 3]}}, "model.num_layers=0"),  # an end of the range is invalid
    ],
)
def test_bad_spaces_are_refused_before_any_trial(space: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        Tuner("unused", "wukong", SearchSpace.from_dict(space, "wukong"), tmp_path, trials=2, preset="tiny")


def test_rounds_are_seeded_and_follow_the_history(tmp_path: Path) -> None:
    def tuner(seed: int) -> Tuner:
        space = SearchSpace.from_dict(SPACE, "dlrm")
        return Tuner("d", "dlrm", space, tmp_path, trials=8, seed=seed, parallel=2, startup_trials=2, preset="tiny")

    first = tuner(1).plan_round(0, 2, [])
    assert first == tuner(1).plan_round(0, 2, [])  # same seed, same trials
    assert first[0].meta["params"] != first[1].meta["params"]  # a round's draws differ
    assert first[0].meta["params"] != tuner(2).plan_round(0, 2, [])[0].meta["params"]
    history = [
        {"trial": s.meta["trial"], "params": s.meta["params"], "status": "ok", "valid": {"auc": auc}}
        for s, auc in zip(first, (0.6, 0.7))
    ]
    later = tuner(1).plan_round(2, 2, history)
    assert [s.id for s in later] == ["trial-0002", "trial-0003"]
    assert later == tuner(1).plan_round(2, 2, history)  # resuming draws the same round again
    assert all(s.splits == ("valid",) for s in later)  # never the test split


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_space_of_choices_is_covered_before_any_configuration_repeats(sampler: str, tmp_path: Path) -> None:
    choices = {
        "model.dlrm.top_mlp": {"choice": [[32, 16], [64], [16]]},
        "model.mlp_norm": {"choice": ["none", "batchnorm"]},
    }
    lines: list[str] = []
    space = SearchSpace.from_dict(choices, "dlrm")
    tuner = Tuner(
        "d",
        "dlrm",
        space,
        tmp_path,
        trials=8,
        sampler=sampler,
        parallel=2,
        startup_trials=2,
        preset="tiny",
        log=lines.append,
    )
    history: list[dict] = []
    for first in range(0, 8, 2):
        drawn = tuner.plan_round(first, 2, history)
        history += [
            {
                "trial": s.meta["trial"],
                "params": s.meta["params"],
                "status": "ok",
                "valid": {"auc": 0.5 + s.meta["trial"] / 100},
            }
            for s in drawn
        ]
    keys = [configuration_key(record["params"]) for record in history]
    assert len(set(keys[:6])) == 6  # the 6 configurations, each once, before any repeats
    assert lines == [f"trial-000{n}: no configuration of the space is left untried; it repeats one" for n in (6, 7)]
    assert [s.meta["params"] for s in tuner.plan_round(6, 2, history[:6])] == [r["params"] for r in history[6:]]


@pytest.mark.slow
def test_tune_records_trials_writes_a_loadable_best_preset_and_resumes(teacher_data: str, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    output = tmp_path / "tune"
    sets = [item for override in [*QUICK, "train.max_steps=12"] for item in ("--set", override)]
    args = ["tune", "--data", teacher_data, "--model", "dlrm", "--space", str(space), "--seed", "3"]
    args += ["--parallel", "2", "--config", "tiny", *sets, "--output", str(output)]
    assert main([*args, "--trials", "2"]) == 0
    lines = (output / "trials.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["trial"] for r in records) == [0, 1] and all(r["status"] == "ok" for r in records)
    assert all("test" not in r and 0 < r["valid"]["auc"] < 1 for r in records)  # selection sees validation only
    best = max(records, key=lambda r: r["valid"]["auc"])
    preset = load_config(output / "best.yaml")
    assert preset.model.name == "dlrm" and preset.data.dataset == ""
    assert preset.train.learning_rate == best["params"]["train.learning_rate"]
    assert preset.model.dlrm.top_mlp == yaml.safe_load(best["params"]["model.dlrm.top_mlp"])
    assert preset.train.max_steps == 12  # the fixed overrides are part of the preset
    table = (output / "trials.md").read_text()
    assert "| rank" in table and f"{best['valid']['auc']:.4f}" in table.split("\n| 1 ")[1].splitlines()[0]

    # Extending the search runs only the new trial; the finished ones stay as they were.
    assert main([*args, "--trials", "3"]) == 0
    extended = (output / "trials.jsonl").read_text().splitlines()
    assert extended[:2] == lines and len(extended) == 3 and json.loads(extended[2])["trial"] == 2
    # A different search in the same folder is refused.
    assert main([*args, "--trials", "3", "--sampler", "random"]) == 2


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs" / "spaces").glob("*.yaml")))
@pytest.mark.parametrize("model", ["wukong", "dlrm", "dcnv2", "finalmlp"])
def test_shipped_search_spaces_are_valid_for_every_model(path: Path, model: str) -> None:
    space = SearchSpace.load(path, model)
    space.check("movielens", [f"model.name={model}"])
    assert space.parameters
