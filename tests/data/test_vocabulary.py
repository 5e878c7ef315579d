"""Vocabularies that extend an earlier one (``prepare --extend-vocabulary``), partitions in the manifest, and
ids mapped by raw value between vocabularies (what warm starts and evaluations on newer data use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wukong.cli import main
from wukong.data.manifest import read_manifest
from wukong.data.vocabulary import dataset_vocabulary, extend, id_map
from wukong.io import open_storage

from ..partitions import write_day
from .test_given_splits import read_split

ROWS = 1_500


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("days")
    for day in (1, 2):
        write_day(folder, day, rows=ROWS)
    return folder


def prepare(days: Path, day: int, output: Path, *extra: str) -> int:
    argv = ["data", "prepare", "--source", "criteo", "--input", str(days / f"day={day}"), "--output", str(output)]
    return main([*argv, "--partition", f"day={day}", "--quiet", *extra])


@pytest.fixture(scope="module")
def day_one(days: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("d1") / "day=1"
    assert prepare(days, 1, output) == 0
    return str(output)


def raw_column(days: Path, day: int, column: int) -> list[str]:
    """Column ``column`` (0: the label) of every line of a day's file, in row-id order."""
    return [line.split("\t")[column] for line in (days / f"day={day}" / "clicks.tsv").read_text().splitlines()]


def test_extended_vocabulary_keeps_known_ids_and_appends_new_values(
    days: Path, day_one: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "day=2"
    assert prepare(days, 2, output, "--extend-vocabulary", day_one) == 0
    old, new = dataset_vocabulary(day_one), dataset_vocabulary(str(output))
    manifest = read_manifest(open_storage(str(output)))
    vocabulary = pq.read_table(output / manifest.files["vocabulary"])
    for feature in ("cat_0", "cat_1"):
        known, values = old.values[feature], new.values[feature]
        assert values[: len(known)].equals(known)  # every value of day 1 keeps its id
        added = values[len(known) :].to_pylist()
        train_values = set(raw_column(days, 2, 14 if feature == "cat_0" else 15))
        assert added and set(added) <= train_values and not set(added) & set(known.to_pylist())
        rows = vocabulary.filter(pa.compute.equal(vocabulary["feature"], feature)).sort_by("id")
        counts = rows["count"].to_numpy()[len(known) :]
        assert (np.diff(counts) <= 0).all() and (counts > 0).all()  # new values by descending frequency
        change = manifest.preprocessing["vocabulary_extends"]["features"][feature]
        assert change == {"kept": len(known), "added": len(added)}
    assert manifest.partition == "day=2" and manifest.preprocessing["vocabulary_extends"]["from"] == day_one

    # The shards hold those ids: each training row's user id is its raw value's place in the vocabulary.
    row_ids, _, sparse = read_split(str(output), "train")
    users = raw_column(days, 2, 14)
    column = manifest.schema.sparse_names.index("cat_0")
    values = new.values["cat_0"].to_pylist()
    assert [values[i - 1] for i in sparse[:, column]] == [users[r] for r in row_ids]

    assert main(["data", "inspect", str(output)]) == 0
    shown = capsys.readouterr().out
    assert "partition day=2" in shown and f"vocabulary extends {day_one}:" in shown


def test_ids_map_by_raw_value_between_vocabularies_fitted_apart(days: Path, day_one: str, tmp_path: Path) -> None:
    output = tmp_path / "day=2"
    assert prepare(days, 2, output) == 0  # no extension: ids in day 2's own frequency order
    old, new = dataset_vocabulary(day_one), dataset_vocabulary(str(output))
    mapped = id_map(old, new, "cat_0")
    assert len(mapped) == new.size("cat_0") and mapped[0] == 0
    known = {value: i + 1 for i, value in enumerate(old.values["cat_0"].to_pylist())}
    expected = [known.get(value, -1) for value in new.values["cat_0"].to_pylist()]
    assert mapped[1:].tolist() == expected
    assert -1 in expected and not np.array_equal(mapped[mapped >= 0], np.arange((mapped >= 0).sum()))


def test_extend_keeps_every_old_id_and_caps_only_the_new_values() -> None:
    base = pa.array(["a", "b", "c"])
    values, counts, change = extend(base, pa.array(["d", "b", "e"]), np.array([5, 4, 1]), max_size=4)
    assert values.to_pylist() == ["a", "b", "c", "d"] and counts.tolist() == [0, 4, 0, 5]
    assert change.to_dict() == {"kept": 3, "added": 1}
    values, _, change = extend(base, pa.array([7, 8]), np.array([2, 1]), max_size=2)  # ints compare as text
    assert values.to_pylist() == ["a", "b", "c"] and change.added == 0


def test_a_base_that_cannot_be_extended_is_one_line(
    days: Path, day_one: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hashed = tmp_path / "hashed"
    assert prepare(days, 1, hashed, "--categorical", "hash", "--hash-size", "64") == 0
    other = tmp_path / "teacher"  # 4 categorical fields, not Criteo's 26
    argv = ["data", "prepare", "--source", "teacher", "--rows", "500", "--teacher-fields", "4", "--output", str(other)]
    assert main([*argv, "--quiet"]) == 0
    capsys.readouterr()
    cases = {
        str(hashed): "encodes categories by hash: pass --categorical hash",
        str(other): "sparse features",
        str(tmp_path / "nothing"): "neither a dataset",
        "7": "holds no model",
    }
    for base, expected in cases.items():
        extra = ["--registry", str(tmp_path / "registry")] if base == "7" else []
        code = prepare(days, 2, tmp_path / "out", "--extend-vocabulary", base, *extra)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and expected in err, (base, err)
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
