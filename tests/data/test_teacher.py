"""The teacher source: reproducible rows, stored oracle probabilities, Bernoulli labels, bounded memory."""

from __future__ import annotations

import dataclasses
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from wukong.cli import main
from wukong.data.errors import DataError
from wukong.data.manifest import read_manifest
from wukong.data.oracle import OracleWriter, entropy, logloss_terms, read_oracle
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.sources import open_source
from wukong.data.sources import teacher as teacher_module
from wukong.data.sources.base import ORACLE_COLUMN
from wukong.data.sources.teacher import TeacherConfig, TeacherSource
from wukong.evaluate import compute_metrics, oracle_metrics
from wukong.io import open_storage
from wukong.pipeline import steps

SMALL = TeacherConfig(num_sparse=6, num_dense=2, max_cardinality=60, width=24, hidden=16, order=3)


def table_of(source: TeacherSource) -> pa.Table:
    return pa.concat_tables(chunk.table for chunk in source.chunks())


def test_same_seed_same_rows_other_seed_other_teacher() -> None:
    first, again = table_of(TeacherSource(3_000, seed=5, config=SMALL)), table_of(TeacherSource(3_000, 5, SMALL))
    assert first.equals(again)
    other = table_of(TeacherSource(3_000, seed=6, config=SMALL))
    assert not np.allclose(first.column(ORACLE_COLUMN).to_numpy(), other.column(ORACLE_COLUMN).to_numpy())
    assert first.num_rows == 3_000
    assert set(first.column_names) == {"label", ORACLE_COLUMN, "int_0", "int_1", *(f"cat_{i}" for i in range(6))}
    for f, cardinality in enumerate(SMALL.cardinalities()):
        ids = first.column(f"cat_{f}").to_numpy()
        assert ids.min() >= 0 and ids.max() < cardinality
    assert first.column("int_0").to_numpy().min() >= 0


@pytest.mark.parametrize("unit_rank", [1, 3])
def test_labels_are_bernoulli_draws_of_the_oracle(unit_rank: int) -> None:
    """Over many rows, the oracle's LogLoss equals its expected LogLoss (mean entropy of p) and the
    labels are calibrated against p: both would fail if labels were drawn from anything but p."""
    source = TeacherSource(150_000, seed=1, config=dataclasses.replace(SMALL, unit_rank=unit_rank))
    table = table_of(source)
    p, y = table.column(ORACLE_COLUMN).to_numpy(), table.column("label").to_numpy()
    losses = logloss_terms(p, y)
    standard_error = losses.std() / np.sqrt(len(losses))
    assert abs(losses.mean() - entropy(p).mean()) < 4 * standard_error
    assert p.mean() == pytest.approx(source.config.positive_rate, abs=0.01)
    order = np.argsort(p)
    for part in np.array_split(order, 10):  # calibration in deciles of p
        expected = p[part].mean()
        assert abs(y[part].mean() - expected) < 4 * np.sqrt(expected * (1 - expected) / len(part))
    logit_sd = np.log(p / (1 - p)).std()
    assert logit_sd == pytest.approx(1 / source.config.temperature, rel=0.1)


def test_a_unit_of_rank_r_sums_r_products_of_its_own_factors() -> None:
    """``u_k = Σ_j Π_{f ∈ S_k} φ_{k,j,f} / √R``, recomputed unit by unit from the factor tables."""
    rank = 3
    config = dataclasses.replace(SMALL, unit_rank=rank)  # field 0 is the dense counts
    teacher = teacher_module.Teacher(config, seed=2)
    dense, ids = teacher.draw(np.random.default_rng(0), 50)
    units = teacher.units(dense, ids)
    assert units.shape == (config.width, 50)
    dense_factors = (teacher._dense_factors(dense) - teacher.dense_mean[:, None]) / teacher.dense_std[:, None]

    def factor(f: int, term: int) -> np.ndarray:
        if f == 0:
            (row,) = np.flatnonzero(teacher.dense_terms == term)
            return dense_factors[row]
        field = teacher.fields[f - 1]
        (row,) = np.flatnonzero(field.terms == term)
        return field.factors[row, ids[:, f - 1]]

    assert any(0 in fields for fields in teacher.unit_fields)
    for k, fields in enumerate(teacher.unit_fields):
        terms = [np.prod([factor(f, k * rank + j) for f in fields], axis=0) for j in range(rank)]
        np.testing.assert_allclose(units[k], np.sum(terms, axis=0) / np.sqrt(rank), rtol=1e-4, atol=1e-5)
    # Rank 1 draws the teacher it always drew: the same unit field sets, and one product per unit.
    plain = teacher_module.Teacher(dataclasses.replace(config, unit_rank=1), seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(plain.unit_fields, teacher.unit_fields))
    assert not np.allclose(plain.units(dense, ids), units)


def test_the_default_rank_keeps_the_probabilities_of_earlier_versions() -> None:
    """p(x) of the first rows of a fixed teacher, as the version before ``unit_rank`` generated them
    (float32 ``tanh`` inside: equal to 1e-5 across machines, not bit for bit)."""
    _, _, probability, _ = TeacherSource(1000, 7, SMALL).generate(0, 6)
    earlier = [0.9845768816812795, 0.10593296027930235, 0.0721485016009417, 0.05226971482496992,
               0.2564301457688665, 0.1512203104485171]  # fmt: skip
    np.testing.assert_allclose(probability, earlier, rtol=1e-5)


def test_the_stored_oracle_matches_the_generator(tmp_path: Path) -> None:
    source = TeacherSource(20_000, seed=3, config=SMALL)
    table = table_of(source)  # row id = position in source order
    truth, labels = table.column(ORACLE_COLUMN).to_numpy(), table.column("label").to_numpy()
    out = str(tmp_path / "teacher")
    manifest = prepare(source, out, PrepareOptions(shard_rows=3_000, block_rows=1_000))
    assert {o.key for o in open_storage(out).list()} == manifest.keys()  # oracle files included, nothing else
    seen = 0
    for split in ("train", "valid", "test"):
        oracle = read_oracle(out, split)
        assert oracle is not None and len(oracle.row_ids) == manifest.rows(split)
        assert np.array_equal(oracle.probabilities, truth[oracle.row_ids])  # bit for bit
        stats = manifest.statistics["oracle"][split]
        assert stats["rows"] == manifest.rows(split)
        assert stats["logloss"] == pytest.approx(logloss_terms(truth[oracle.row_ids], labels[oracle.row_ids]).mean())
        reader = DatasetReader(out, split, batch_size=512, shuffle=False, drop_last=False)
        for batch in reader:
            ids = batch.row_ids.numpy()
            assert np.array_equal(oracle.lookup(ids), truth[ids])
            assert np.array_equal(batch.labels.numpy(), labels[ids])
            seen += len(ids)
    assert seen == 20_000


@pytest.mark.slow
def test_oracle_beats_an_oracle_free_baseline(tmp_path: Path) -> None:
    """The teacher's own probabilities against a baseline fitted on the training rows (per-id CTRs
    combined additively in logit space, smoothed): the oracle must win on held-out rows, by LogLoss
    and AUC, and `oracle_metrics` must say so."""
    source = TeacherSource(60_000, seed=2, config=SMALL)
    table = table_of(source)
    out = str(tmp_path / "teacher")
    prepare(source, out, PrepareOptions())
    train, test = read_oracle(out, "train").row_ids, read_oracle(out, "test").row_ids
    y = table.column("label").to_numpy().astype(np.float64)
    base = y[train].mean()
    logit = np.full(len(test), np.log(base / (1 - base)))
    for f in range(SMALL.num_sparse):
        ids = table.column(f"cat_{f}").to_numpy()
        counts = np.bincount(ids[train], minlength=ids.max() + 1)
        positives = np.bincount(ids[train], weights=y[train], minlength=ids.max() + 1)
        rate = (positives + 20 * base) / (counts + 20)  # shrunk towards the base rate
        logit += np.log(rate / (1 - rate))[ids[test]] - np.log(base / (1 - base))
    baseline = 1 / (1 + np.exp(-logit))
    metrics = oracle_metrics(out, "test", test, baseline, y[test])
    own = compute_metrics(torch.from_numpy(baseline), torch.from_numpy(y[test]))
    assert own["auc"] > 0.6  # the baseline is a real one: it learned the first-order effects
    assert metrics["excess_logloss"] > 0.01
    assert metrics["oracle_auc"] > own["auc"] + 0.02
    assert metrics["oracle_logloss"] == pytest.approx(own["logloss"] - metrics["excess_logloss"])
    assert metrics["oracle_logloss"] == pytest.approx(metrics["oracle_expected_logloss"], abs=0.02)


def test_oracle_metrics_are_empty_without_an_oracle_and_reject_foreign_rows(tmp_path: Path) -> None:
    from wukong.data.sources.synthetic import SyntheticSource

    plain = str(tmp_path / "synthetic")
    prepare(SyntheticSource(rows=2_000, seed=0, cardinality=50), plain, PrepareOptions())
    assert oracle_metrics(plain, "valid", np.arange(3), np.full(3, 0.5), np.ones(3)) == {}
    taught = str(tmp_path / "teacher")
    prepare(TeacherSource(2_000, seed=0, config=SMALL), taught, PrepareOptions())
    foreign = read_oracle(taught, "train").row_ids[:3]  # training rows are not validation rows
    with pytest.raises(DataError, match="have no oracle probability"):
        oracle_metrics(taught, "valid", foreign, np.full(3, 0.5), np.ones(3))


def test_a_modified_oracle_file_is_detected(tmp_path: Path) -> None:
    out = tmp_path / "teacher"
    manifest = prepare(TeacherSource(2_000, seed=4, config=SMALL), str(out), PrepareOptions())
    path = out / manifest.files["oracle_test"]
    path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    with pytest.raises(DataError, match="sha256 mismatch"):
        read_oracle(str(out), "test")


@pytest.mark.slow
def test_streaming_memory_does_not_grow_with_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generating rows and streaming their oracle probabilities to Parquet holds one chunk, however
    many rows: 8x more rows take no more peak memory (chunks are made small so that many pass
    quickly). Keeping just the extra rows' probabilities (0.9 MB) would break the bound. Python's
    allocations (tracemalloc) and Arrow's (its memory pool, which tracemalloc does not see: the
    Parquet writer's buffers) are both bounded."""
    monkeypatch.setattr(teacher_module, "CHUNK_ROWS", 512)

    def peaks(rows: int) -> tuple[int, int, int]:
        source = TeacherSource(rows, seed=0, config=SMALL)  # the teacher's tables are built before measuring
        writer = OracleWriter(open_storage(str(tmp_path / f"out-{rows}")), "run", tmp_path)
        arrow_before, arrow_peak = pa.total_allocated_bytes(), 0
        tracemalloc.start()
        start = 0
        for chunk in source.chunks():
            count, table = chunk.table.num_rows, chunk.table
            ids = np.arange(start, start + count)
            writer.add("train", ids, table.column(ORACLE_COLUMN).to_numpy(), table.column("label").to_numpy())
            start += count
            del chunk, table
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - arrow_before)
        streaming = tracemalloc.get_traced_memory()[1]
        writer.close()  # hashes and uploads the file in 1 MB pieces
        overall = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return streaming, overall, arrow_peak

    (small, _, small_arrow), (large, overall, large_arrow) = peaks(32 * 512), peaks(256 * 512)
    assert large < small + (256 << 10)
    assert overall < small + (2 << 20)
    assert large_arrow < small_arrow + (256 << 10)


def test_cli_prepares_a_teacher_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "teacher"
    flags = ["--teacher-fields", "5", "--teacher-dense", "0", "--teacher-order", "3", "--teacher-temperature", "2"]
    flags += ["--teacher-unit-rank", "2"]
    args = ["data", "prepare", "--source", "teacher", "--rows", "3000", "--cardinality", "40", "--output", str(out)]
    assert main([*args, *flags, "--quiet"]) == 0
    manifest = read_manifest(open_storage(str(out)))
    assert manifest.source["teacher"]["order"] == 3 and manifest.source["teacher"]["max_cardinality"] == 40
    assert manifest.source["teacher"]["unit_rank"] == 2
    assert manifest.schema.dense == () and len(manifest.schema.sparse) == 5
    assert json.loads(manifest.to_json())["statistics"]["oracle"]["valid"]["rows"] == manifest.rows("valid")
    assert main([*args, "--overwrite", "--teacher-order", "40", "--quiet"]) == 2  # more than 17 fields
    assert "order=40" in capsys.readouterr().err
    synthetic = ["data", "prepare", "--source", "synthetic", "--rows", "10", "--output", str(tmp_path / "s")]
    assert main([*synthetic, "--teacher-order", "3", "--quiet"]) == 2
    assert "apply to --source teacher only" in capsys.readouterr().err


def test_the_pipeline_ingest_shapes_the_teacher(tmp_path: Path) -> None:
    """The pipelines' ingest step takes what ``--cardinality`` and ``--teacher-*`` give the CLI, checked."""
    shape = {"num_sparse": 5, "num_dense": 0, "order": 3, "width": 12, "hidden": 8}
    summary = steps.ingest("teacher", "", str(tmp_path / "t"), rows=2000, cardinality=40, teacher=shape)
    manifest = read_manifest(open_storage(summary["uri"]))
    assert manifest.source["teacher"]["max_cardinality"] == 40 and manifest.source["teacher"]["order"] == 3
    assert len(manifest.schema.sparse) == 5 and manifest.schema.dense == ()
    with pytest.raises(DataError, match=r"unknown teacher setting\(s\) orders; known: num_sparse"):
        steps.ingest("teacher", "", str(tmp_path / "u"), rows=100, teacher={"orders": 3})
    with pytest.raises(DataError, match="teacher source only, not synthetic"):
        steps.ingest("synthetic", "", str(tmp_path / "v"), rows=100, teacher={"order": 3})
    with pytest.raises(DataError, match="cardinality applies to the synthetic and teacher sources, not criteo"):
        steps.ingest("criteo", str(tmp_path), str(tmp_path / "w"), cardinality=10)
    assert not (tmp_path / "u").exists() and not (tmp_path / "v").exists()


def test_open_source_builds_a_teacher() -> None:
    source = open_source("teacher", rows=10, seed=1, cardinality=30, teacher=SMALL)
    assert isinstance(source, TeacherSource) and source.config.max_cardinality == 30 and source.total_rows == 10
    assert source.describe()["teacher"]["width"] == SMALL.width
