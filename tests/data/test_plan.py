"""The epoch plan on row positions alone: legs, resizes, exact row accounting, locality."""

from __future__ import annotations

import numpy as np
import pytest

from wukong.data.plan import EpochPlan, Leg, RowRanges, position_blocks
from wukong.data.shuffle import BatchCutter, Positions, advance

GLOBAL_BATCH = 48  # divisible by 1, 2, 3 and 4 ranks


def uneven_blocks(seed: int = 0, count: int = 60) -> list[int]:
    return np.random.default_rng(seed).integers(20, 120, size=count).tolist()


def layout(world: int, workers: int = 1, buffer_rows: int = 150, batches: int = 0) -> Leg:
    return Leg(world, GLOBAL_BATCH // world, workers, True, buffer_rows, True, batches)


def read_leg(plan: EpochPlan, leg: Leg, steps: int | None = None) -> list[list[np.ndarray]]:
    """Positions of each rank's batches in the next leg (all, or the first ``steps``)."""
    per_rank = []
    for rank in range(leg.world_size):
        batches: dict[int, np.ndarray] = {}
        for worker in range(leg.workers):
            mine = plan.worker(leg, rank, worker)
            cutter = BatchCutter(position_blocks(mine.rows, plan.edges), mine.batch_sizes, mine.rng, leg.buffer_rows)
            for index, batch in zip(mine.indices, cutter):
                batches[index] = batch.at
        ordered = [batches[j] for j in sorted(batches)]
        per_rank.append(ordered if steps is None else ordered[:steps])
    return per_rank


def test_row_ranges() -> None:
    ranges = RowRanges.of(np.array([5, 3, 4, 10, 11, 20]))
    assert ranges.starts.tolist() == [3, 10, 20] and ranges.stops.tolist() == [6, 12, 21] and len(ranges) == 6
    assert ranges.slice(1, 5).to_array().tolist() == [4, 5, 10, 11]
    merged = RowRanges.union([RowRanges.span(0, 3), ranges, RowRanges.span(12, 15)])
    assert merged.starts.tolist() == [0, 10, 20] and merged.stops.tolist() == [6, 15, 21]
    edges = np.array([0, 4, 8, 16, 30])
    assert list(merged.pieces(edges)) == [(0, [(0, 4)]), (1, [(0, 2)]), (2, [(2, 7)]), (3, [(4, 5)])]
    with pytest.raises(RuntimeError, match="overlap"):
        RowRanges.union([RowRanges.span(0, 5), RowRanges.span(4, 6)])


def test_a_cutter_can_start_from_another_cutters_state() -> None:
    blocks = [Positions(np.arange(a, a + 37)) for a in range(0, 37 * 20, 37)]
    sizes = [24] * 25
    whole = [b.at.tolist() for b in BatchCutter(blocks, sizes, np.random.default_rng(1), 100)]
    for skip in (0, 1, 7, 24, 25):
        state = advance(BatchCutter(blocks, sizes, np.random.default_rng(1), 100), skip)
        again = BatchCutter(
            _rest(blocks, state.pulled), state.sizes, state.rng, 100, pool=state.pool, exhausted=state.exhausted
        )
        assert whole[skip:] == [b.at.tolist() for b in again], skip


def _rest(blocks: list[Positions], pulled: int) -> list[Positions]:
    rows = np.concatenate([b.at for b in blocks])[pulled:]
    return [Positions(rows[i : i + 37]) for i in range(0, len(rows), 37)]


def test_a_buffer_smaller_than_a_batch_still_makes_progress() -> None:
    blocks = [Positions(np.arange(a, a + 10)) for a in range(0, 400, 10)]
    batches = list(BatchCutter(blocks, [100] * 4, np.random.default_rng(0), 50))
    assert sorted(np.concatenate([b.at for b in batches]).tolist()) == list(range(400))


@pytest.mark.parametrize(
    ("before", "after"), [((2, 1), (1, 1)), ((1, 1), (2, 1)), ((2, 1), (3, 1)), ((2, 2), (3, 1)), ((3, 1), (2, 2))]
)
@pytest.mark.parametrize("steps", [0, 1, 5, 13, 83, 86])
def test_a_resized_epoch_reads_every_row_once(before: tuple, after: tuple, steps: int) -> None:
    """(W ranks, K workers) read `steps` batches each, then (W', K') the rest: every row once but < B."""
    blocks = uneven_blocks()
    total = sum(blocks)
    first = layout(before[0], before[1], batches=steps)
    plan = EpochPlan(blocks, seed=3, epoch=1)
    read = [b for rank in read_leg(plan, first, steps) for b in rank]
    second_plan = EpochPlan(blocks, seed=3, epoch=1, earlier=[first])
    second = layout(after[0], after[1])
    rest = read_leg(second_plan, second)
    assert len({len(r) for r in rest}) == 1, "every rank gets the same number of batches"
    assert steps + len(rest[0]) == total // GLOBAL_BATCH, "the epoch keeps its number of steps"
    positions = np.concatenate(read + [b for rank in rest for b in rank])
    assert len(positions) == len(set(positions.tolist())), "a row was read twice"
    assert total - len(positions) < GLOBAL_BATCH, "rows were skipped"
    assert len(second_plan.remaining) == total - steps * GLOBAL_BATCH


def test_three_legs_2_3_1() -> None:
    blocks = uneven_blocks(seed=4)
    total = sum(blocks)
    legs = [layout(2, batches=4), layout(3, batches=3)]
    read = [b for rank in read_leg(EpochPlan(blocks, 0, 0), legs[0], 4) for b in rank]
    read += [b for rank in read_leg(EpochPlan(blocks, 0, 0, legs[:1]), legs[1], 3) for b in rank]
    rest = read_leg(EpochPlan(blocks, 0, 0, legs), layout(1))
    positions = np.concatenate(read + rest[0])
    assert len(set(positions.tolist())) == len(positions) and total - len(positions) < GLOBAL_BATCH
    assert 4 + 3 + len(rest[0]) == total // GLOBAL_BATCH


def test_a_new_leg_keeps_reads_local() -> None:
    """A rank of a new leg reads a contiguous run of the epoch order plus the few rows the old
    workers' shuffle buffers held: it touches hardly more stored blocks than its rows fill."""
    blocks = [100] * 200
    first = layout(2, workers=2, buffer_rows=300, batches=40)
    plan = EpochPlan(blocks, 0, 0, [first])
    for rank in range(3):
        rows = plan.worker(layout(3), rank, 0).rows
        touched = sum(1 for _ in rows.pieces(plan.edges))
        held_rows = first.world_size * first.workers * first.buffer_rows
        assert touched <= len(rows) // 100 + 2 + held_rows // 100 * 2, (rank, touched)


def test_a_leg_longer_than_its_layout_allows_is_refused() -> None:
    from wukong.data.errors import DataError

    with pytest.raises(DataError, match="another dataset"):
        EpochPlan(uneven_blocks(), 0, 0, [layout(2, batches=10_000)])
