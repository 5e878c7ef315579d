"""The power-law fit recovers known laws, says when there is none, and the report draws and tabulates it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from wukong.data.errors import DataError
from wukong.experiments.powerlaw import fit_power_law
from wukong.experiments.report import best_of_grid, build_report, write_report

TRUE = {"floor": 0.45, "scale": 0.02, "exponent": 0.3}


def law(c: np.ndarray) -> np.ndarray:
    return TRUE["floor"] + TRUE["scale"] * c ** -TRUE["exponent"]


def test_recovers_known_parameters_from_noisy_seeds() -> None:
    rng = np.random.default_rng(0)
    c = np.repeat(np.geomspace(0.03, 10, 7), 2)  # two seeds per compute value
    fit = fit_power_law(c, law(c) + rng.normal(0, 2e-4, len(c)))
    assert fit.decreasing and fit.points == 14 and fit.identified
    for name, truth in TRUE.items():
        value, std = getattr(fit, name), getattr(fit, f"{name}_std")
        assert 0 < std < 0.1 * abs(truth)
        assert abs(value - truth) < 4 * std, (name, value, std)
    # The paper's axis: relative gain per 4x compute, here at C = 10.
    expected = (law(np.array(10.0)) - law(np.array(40.0))) / law(np.array(10.0))
    assert fit.gain(10.0) == pytest.approx(expected, rel=0.05)


def test_exact_points_give_exact_parameters_at_any_compute_scale() -> None:
    c = np.geomspace(1e12, 1e15, 6)  # total training FLOPs: far from 1
    y = 0.3 + 50.0 * c**-0.2
    fit = fit_power_law(c, y)
    assert (fit.floor, fit.scale, fit.exponent) == pytest.approx((0.3, 50.0, 0.2), rel=1e-4)


def test_no_decrease_is_reported_not_forced() -> None:
    c = np.geomspace(0.1, 10, 5)
    fit = fit_power_law(c, 0.5 + 0.01 * np.log(c))  # gets worse with compute
    assert not fit.decreasing and "no decrease" in fit.formula()


def test_a_flat_curve_with_one_step_is_not_an_identified_law() -> None:
    """Least squares draws a curve through points that are flat and then drop once (docs/scaling.md's
    tuned Wukong), but its α stays within two standard errors of 0: no evidence of a power law."""
    rng = np.random.default_rng(2)
    c = np.repeat(np.geomspace(0.03, 3, 4), 2)
    flat_then_step = np.where(c < 1, 0.509, 0.506) + rng.normal(0, 5e-4, len(c))
    fit = fit_power_law(c, flat_then_step)
    assert fit.decreasing and fit.identified is False
    assert fit_power_law(c[::2], flat_then_step[::2]).identified is False  # one seed: 4 points, σ exists
    exact = fit_power_law([0.1, 1.0, 10.0], [0.6, 0.5, 0.45])  # 3 points, 3 parameters: no σ
    assert exact.identified is None


def test_too_few_compute_values() -> None:
    with pytest.raises(ValueError, match="at least 3 distinct"):
        fit_power_law([1.0, 1.0, 2.0], [0.5, 0.5, 0.4])


def record(family: str, point: int, mflops: float, seed: int, loss: float) -> dict:
    metrics = {"auc": 0.7, "logloss": loss, "excess_logloss": loss - 0.4}
    return {
        "id": f"{family}-{point:02d}-s{seed}",
        "status": "ok",
        "model": family,
        "family": family,
        "point": point,
        "target_mflops": mflops,
        "seed": seed,
        "mflops_per_example": mflops,
        "training_flops": 3 * mflops * 1e6 * 10_000,
        "parameters": {"dense": 1000 * (point + 1), "sparse": 5000, "total": 6000},
        "valid": metrics,
        "test": metrics,
        "wall_seconds": 1.0,
    }


def test_report_fits_every_family_and_lists_failures() -> None:
    rng = np.random.default_rng(1)
    targets = np.geomspace(0.05, 5, 5)
    records = [
        record(family, i, float(c), seed, float(floor + 0.03 * c**-0.25 + rng.normal(0, 1e-4)))
        for family, floor in (("wukong", 0.42), ("dlrm", 0.44))
        for i, c in enumerate(targets)
        for seed in (0, 1)
    ]
    records.append({"id": "dcnv2-00-s0", "status": "failed", "model": "dcnv2", "error": "log\nValueError: boom"})
    report = build_report(records)
    assert set(report.figures) == {"scaling-logloss.png", "scaling-excess.png", "scaling-compute.png"}
    assert all(png.startswith(b"\x89PNG") for png in report.figures.values())
    fits = {(law.family, law.view): law.fit for law in report.laws}
    assert fits[("wukong", "logloss")].floor == pytest.approx(0.42, abs=0.003)
    assert fits[("dlrm", "excess")].floor == pytest.approx(0.04, abs=0.003)
    assert math.isclose(fits[("wukong", "compute")].exponent, fits[("wukong", "logloss")].exponent, rel_tol=1e-3)
    assert "dcnv2-00-s0: ValueError: boom" in report.markdown
    assert report.html.count("data:image/png;base64,") == 3 and "<script" not in report.html
    assert re.search(r"\| wukong +\| LogLoss +\| MFLOP/example +\| 0\.42\d\d ± .*\| yes +\|", report.markdown)


def test_a_grid_counts_each_points_best_recipe_on_validation_only() -> None:
    """Each point trained at 3 rates: the fit sees one record per (point, seed), chosen by validation
    LogLoss; a recipe that is best on test but not on validation is never chosen."""
    targets = np.geomspace(0.05, 5, 4)
    records = []
    for i, c in enumerate(targets):
        for g, rate in enumerate(("0.001", "0.002", "0.004")):
            loss = float(0.42 + 0.03 * c**-0.25) + (0.0 if g == i % 3 else 0.01)  # the best rate varies
            r = record("wukong", i, float(c), 0, loss)
            r["id"] += f"-g{g:02d}"
            r["grid"] = {"train.learning_rate": rate}
            r["test"] = {**r["test"], "logloss": loss - (0.05 if g != i % 3 else 0.0)}  # test prefers the others
            records.append(r)
    report = build_report(records)
    fit = next(law.fit for law in report.laws if law.view == "logloss")
    assert fit.points == 4  # one record per point, not 12
    assert fit.floor == pytest.approx(0.42 - 0.0, abs=0.003)  # the validation-best records' test losses
    assert "3 recipes" in report.markdown and "chosen on valid" in report.markdown
    for i in range(4):
        assert f"learning_rate={('0.001', '0.002', '0.004')[i % 3]}" in report.markdown.splitlines()[-4 + i]


def write_sweep(folder: Path, records: list[dict], **settings) -> Path:
    folder.mkdir(parents=True)
    pinned = {"data": "d", "models": ["wukong"], "targets_mflops": [], "rows": 0, "preset": "p", "grid": None}
    (folder / "sweep.json").write_text(json.dumps({**pinned, **settings}))
    (folder / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def test_points_of_another_sweep_on_the_same_budget_join_the_report(tmp_path: Path) -> None:
    """Points added later (here a lower and a higher target, in two more sweeps) are fitted with the
    first sweep's; a sweep of other data or an overlapping point is refused, and nothing is written."""
    curve = {c: 0.42 + 0.03 * c**-0.25 for c in (0.01, 0.05, 0.25, 1.25)}
    first = write_sweep(tmp_path / "a", [record("wukong", i, c, 0, curve[c]) for i, c in enumerate((0.05, 0.25))])
    low = write_sweep(tmp_path / "low", [record("wukong", 0, 0.01, 0, curve[0.01])], targets_mflops=[0.01])
    high = write_sweep(tmp_path / "high", [record("wukong", 0, 1.25, 0, curve[1.25])], targets_mflops=[1.25])
    written = write_report(first, add=[low, high], output=tmp_path / "all")
    assert {p.name for p in written} >= {"report.md", "laws.json"}
    laws = json.loads((tmp_path / "all" / "laws.json").read_text())
    fit = next(law["fit"] for law in laws if law["view"] == "logloss")
    assert fit["points"] == 4 and fit["exponent"] == pytest.approx(0.25, rel=1e-3)
    assert not (first / "report.md").exists()  # --output took the report

    other = write_sweep(tmp_path / "other", [record("wukong", 0, 1.25, 0, 0.4)], data="elsewhere")
    with pytest.raises(DataError, match=r"another experiment than .*data='d' vs 'elsewhere'"):
        write_report(first, add=[other], output=tmp_path / "x")
    again = write_sweep(tmp_path / "again", [record("wukong", 0, 0.25, 1, 0.5)], targets_mflops=[0.25])
    with pytest.raises(DataError, match=r"measures points that .* measures too \(wukong at 0\.25\)"):
        write_report(first, add=[again], output=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def gridded(family: str, mflops: float, seed: int, rate: str, valid: float, test: float) -> dict:
    r = record(family, 0, mflops, seed, valid)
    r["id"] += f"-{rate}"
    r["grid"] = {"train.learning_rate": rate}
    r["test"] = {**r["test"], "logloss": test}
    return r


def test_the_recipe_is_chosen_on_the_search_seed_and_kept_at_every_seed() -> None:
    """Seed 1 prefers the other rate on validation, but the point's recipe was chosen on seed 0."""
    records = [
        gridded("wukong", 1.0, 0, "0.001", 0.50, 0.50),
        gridded("wukong", 1.0, 0, "0.003", 0.51, 0.40),  # best on test: never chosen for it
        gridded("wukong", 1.0, 1, "0.001", 0.52, 0.52),
        gridded("wukong", 1.0, 1, "0.003", 0.49, 0.49),
    ]
    chosen = best_of_grid(records)
    assert sorted((r["seed"], r["grid"]["train.learning_rate"]) for r in chosen) == [(0, "0.001"), (1, "0.001")]


def test_a_wider_grid_from_another_sweep_rechooses_each_points_recipe(tmp_path: Path) -> None:
    """The sweep chose 0.001 on seed 0 and trained it on seed 1 too; a sweep one step beyond (0.0005),
    better on seed 0's validation, takes the point with both its seeds; a duplicate or a sweep of
    another grid key is refused."""
    grid = {"grid": {"train.learning_rate": ["0.001", "0.003"]}, "targets_mflops": [1.0]}
    first = write_sweep(
        tmp_path / "a",
        [
            gridded("wukong", 1.0, 0, "0.001", 0.50, 0.50),
            gridded("wukong", 1.0, 0, "0.003", 0.51, 0.51),
            gridded("wukong", 1.0, 1, "0.001", 0.52, 0.52),
        ],
        **grid,
    )
    wider = [gridded("wukong", 1.0, s, "0.0005", 0.48 + s / 100, 0.47 + s / 100) for s in (0, 1)]
    edge = write_sweep(tmp_path / "edge", wider, grid={"train.learning_rate": ["0.0005"]}, targets_mflops=[1.0])
    write_report(first, output=tmp_path / "all", extend=[edge])
    table = (tmp_path / "all" / "report.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| wukong") and "learning_rate" in line)
    assert "learning_rate=0.0005" in row and "0.4750 ± 0.0071" in row  # test LogLoss of its two seeds
    assert "fewer seeds than trained" not in table
    seed_zero_only = write_sweep(
        tmp_path / "edge0", wider[:1], grid={"train.learning_rate": ["0.0005"]}, targets_mflops=[1.0]
    )
    write_report(first, output=tmp_path / "early", extend=[seed_zero_only])  # its winner lacks seed 1
    assert (
        "fewer seeds than trained (train the winner's other seeds): wukong at 1.0 (1 of 2 seeds)"
        in (tmp_path / "early" / "report.md").read_text()
    )
    with pytest.raises(DataError, match=r"trains what is already reported \(wukong at 1\.0, .*0\.001.*seed 0\)"):
        write_report(first, output=tmp_path / "x", extend=[first])
    other_key = write_sweep(tmp_path / "wd", wider, grid={"train.weight_decay": ["0.1"]}, targets_mflops=[1.0])
    with pytest.raises(DataError, match=r"extends a grid only with other values of the same keys"):
        write_report(first, output=tmp_path / "y", extend=[other_key])
