"""Configuration: presets, YAML round-trip, --set overrides and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from wukong.config import PRESETS_DIR, Config, ConfigError, load_config, save_config, valid_keys


def test_defaults_without_a_preset() -> None:
    assert load_config() == Config()


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_shipped_preset_loads(preset: str) -> None:
    assert isinstance(load_config(preset), Config)


def test_preset_overrides_defaults() -> None:
    cfg = load_config("tiny")
    assert cfg.model.embedding_dim == 16 and Config().model.embedding_dim == 128
    assert cfg.model.dcnv2.rank == 8
    # Keys the preset does not name keep their defaults.
    assert cfg.train.learning_rate == Config().train.learning_rate


def test_yaml_round_trip(tmp_path: Path) -> None:
    cfg = load_config("tiny", ["model.num_layers=5", "model.fmb_mlp=[32,16]", "train.learning_rate=3e-4"])
    save_config(cfg, tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == cfg


def test_set_overrides_with_yaml_values() -> None:
    cfg = load_config("tiny", ["model.num_layers=4", "model.head_mlp=[8, 4]", "model.fm_projection=static"])
    assert cfg.model.num_layers == 4
    assert cfg.model.head_mlp == [8, 4]
    assert cfg.model.fm_projection == "static"
    # Later overrides win.
    assert load_config("tiny", ["model.num_layers=4", "model.num_layers=6"]).model.num_layers == 6


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as error:
        load_config("tiny", ["model.num_layer=4"])
    message = str(error.value)
    assert "unknown key 'model.num_layer'" in message
    assert "num_layers" in message and "fm_rank" in message and "dcnv2" in message


def test_unknown_nested_and_top_level_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'model\.dlrm\.top'; valid keys under 'model\.dlrm': top_mlp"):
        load_config(None, ["model.dlrm.top=[1]"])
    with pytest.raises(ConfigError, match="valid keys at the top level: model, data, train"):
        load_config(None, ["trainer.lr=1"])


def test_unknown_key_in_a_preset_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  embeding_dim: 8\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'model\.embeding_dim'.*embedding_dim"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.num_layers=many", "could not be converted to Integer"),
        ("model.num_layers=0", "model.num_layers must be > 0"),
        ("model.name=transformer", "choose one of: wukong, dlrm, dcnv2, finalmlp"),
        ("model.fm_projection=dynamic", "model.fm_projection must be one of static, attentive"),
        ("model.finalmlp.num_heads=7", "divisible by num_heads"),
        ("model.head_mlp=[8,-1]", "positive layer widths"),
        ("model.num_layers", "expected KEY=VALUE"),
    ],
)
def test_invalid_values_are_explained(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config("tiny", [override])


def test_missing_preset_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"preset 'nope' not found.*one of: .*tiny"):
        load_config("nope")


def test_valid_keys_walks_sections() -> None:
    assert valid_keys("") == ["model", "data", "train"]
    assert valid_keys("model.finalmlp") == ["stream1_mlp", "stream2_mlp", "gate_hidden", "num_heads", "dropout", "norm"]
