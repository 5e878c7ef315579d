"""The training review's findings, each with the test that failed before its fix (issue 9).

Process groups here are real: a one-rank group in this process, two ranks spawned, or whole runs
of ``wukong train``. A CUDA-only group (what NCCL is) is a gloo group registered for ``cuda`` alone:
it refuses CPU tensors with NCCL's very message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wukong.config import TrainConfig, load_config
from wukong.data.errors import DataError
from wukong.data.prepare import PrepareOptions, prepare
from wukong.data.reader import DatasetReader
from wukong.data.sources.synthetic import SyntheticSource
from wukong.model import build_model
from wukong.schema import FeatureSchema, SparseFeature
from wukong.train.checkpoint import Checkpointer, step_dir
from wukong.train.distributed import DistEnv, collective_device
from wukong.train.module import TrainModule
from wukong.train.predict import predict
from wukong.train.sharding import EBC_PATH, build_plan, make_sharder

from .conftest import wukong_train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """About 4 800 training rows in 3 shards: 18 steps an epoch at the tests' batch of 256."""
    out = str(tmp_path_factory.mktemp("small") / "ds")
    prepare(SyntheticSource(rows=6_000, seed=1, cardinality=200), out, PrepareOptions(shard_rows=2_000))
    return out


@pytest.fixture
def one_rank_group(tmp_path: Path):
    """A gloo group of one rank in this process, torn down afterwards."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield DistEnv(0, 1, 0, torch.device("cpu"), "gloo", 1)
    dist.destroy_process_group()


def run_probe(command: str, arguments: dict, nproc: int = 1) -> dict:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    argv = [sys.executable, *launcher, "-m", "tests.train.probe", command, json.dumps(arguments)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(Path(arguments["result"]).read_text()) | {"output": done.stdout + done.stderr}


# ---- collectives on the device the process group serves ------------------------------------------


def test_a_cuda_only_group_gathers_on_the_gpu(tmp_path: Path) -> None:
    """NCCL serves CUDA tensors only; predict used to all-gather CPU tensors and failed there."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("cuda:gloo", store=store, rank=0, world_size=1)  # a group with NCCL's reach
    try:
        with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
            dist.all_gather([torch.zeros(1)], torch.ones(1))  # what predict did
        os.environ["LOCAL_RANK"], before = "1", os.environ.get("LOCAL_RANK")
        assert collective_device() == torch.device("cuda", 1)
    finally:
        dist.destroy_process_group()
        if before is None:
            os.environ.pop("LOCAL_RANK", None)
        else:
            os.environ["LOCAL_RANK"] = before
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store2"), 1), rank=0, world_size=1)
    try:
        assert collective_device() == torch.device("cpu")
    finally:
        dist.destroy_process_group()


def _two_ranks(rank: int, folder: str, data: str) -> None:
    """Rank ``rank`` of a 2-rank gloo group: predict with every collective's tensors checked, and
    ``latest()`` when this rank's listing of the storage misses what rank 0's shows."""
    dist.init_process_group("gloo", store=dist.FileStore(f"{folder}/store", 2), rank=rank, world_size=2)
    devices = []
    real_all_gather = dist.all_gather

    def checked_all_gather(outputs, tensor, *args, **kwargs):
        devices.extend(str(t.device) for t in [*outputs, tensor])
        return real_all_gather(outputs, tensor, *args, **kwargs)

    dist.all_gather = checked_all_gather
    reader = DatasetReader(data, "valid", 50, rank=rank, world_size=2, shuffle=False, drop_last=False)
    result = predict(lambda b: b.dense.sum(1), reader, torch.device("cpu"))
    dist.all_gather = real_all_gather

    env = DistEnv(rank, 2, rank, torch.device("cpu"), "gloo", 2)
    checkpointer = Checkpointer(f"{folder}/run", env, keep=2)
    checkpointer.save(5, {"w": torch.arange(4.0)}, {"progress": {}})
    if rank == 1:  # eventually consistent storage: this rank does not see the new checkpoint yet
        checkpointer.storage.list = lambda prefix="": []
    latest = checkpointer.latest()
    again = checkpointer.save(5, {"w": torch.zeros(4)}, {"progress": {}})
    record = {
        "devices": sorted(set(devices)),
        "expected": str(collective_device()),
        "probabilities": result.probabilities.tolist(),
        "row_ids": result.row_ids.tolist(),
        "latest": latest,
        "saved_again": again,
    }
    Path(f"{folder}/rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(small_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("two")
    mp.spawn(_two_ranks, args=(str(folder), small_dataset), nprocs=2)
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_predict_gathers_every_row_on_the_groups_device(two_ranks: list[dict], small_dataset: str) -> None:
    alone = predict(
        lambda b: b.dense.sum(1), DatasetReader(small_dataset, "valid", 50, shuffle=False, drop_last=False), "cpu"
    )
    for rank in two_ranks:
        assert rank["devices"] == [rank["expected"]], "a collective ran on a device the group does not serve"
        assert rank["row_ids"] == alone.row_ids.tolist()
        assert rank["probabilities"] == pytest.approx(alone.probabilities.tolist())


@pytest.mark.slow
def test_rank_0_decides_the_latest_checkpoint(two_ranks: list[dict]) -> None:
    assert [rank["latest"] for rank in two_ranks] == [5, 5]


@pytest.mark.slow
def test_a_complete_checkpoint_is_never_rewritten(two_ranks: list[dict]) -> None:
    assert [rank["saved_again"] for rank in two_ranks] == [False, False]


# ---- placement across nodes -----------------------------------------------------------------------


def test_a_plan_for_two_nodes_places_shards_on_local_devices(tiny) -> None:
    """Rank r of a node of L processes uses cuda:(r mod L); the plan used cuda:r (absent on node 2)."""
    schema = FeatureSchema(sparse=(SparseFeature("big", 50_000), SparseFeature("mid", 2_000)))
    model = build_model("dlrm", schema, tiny.model, device="meta")
    env = DistEnv(
        rank=3, world_size=4, local_rank=1, device=torch.device("cuda", 1), backend="nccl", local_world_size=2
    )
    train = TrainConfig(row_wise_min_rows=10_000, data_parallel_max_rows=100)
    plan = build_plan(TrainModule(model), model.embedding.ebc, make_sharder(train, env), train, env, 64)
    placements = [str(s.placement) for s in plan.plan[EBC_PATH]["t_big"].sharding_spec.shards]
    assert placements == ["rank:0/cuda:0", "rank:1/cuda:1", "rank:2/cuda:0", "rank:3/cuda:1"]


# ---- checkpoints -------------------------------------------------------------------------------------


def test_saving_a_complete_step_again_keeps_it_and_pruning_drops_markers_first(
    one_rank_group: DistEnv, tmp_path: Path
) -> None:
    checkpointer = Checkpointer(str(tmp_path / "run"), one_rank_group, keep=1)
    assert checkpointer.save(3, {"w": torch.ones(2)}, {"progress": {"step": 3}})
    folder = tmp_path / "run" / step_dir(3)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert not checkpointer.save(3, {"w": torch.zeros(2)}, {"progress": {"step": 3}})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files, "a complete checkpoint was rewritten"
    deleted: list[list[str]] = []
    delete = checkpointer.storage.delete
    checkpointer.storage.delete = lambda keys: (deleted.append(list(keys)), delete(keys))
    checkpointer.save(4, {"w": torch.ones(2)}, {"progress": {"step": 4}})
    assert deleted[0] == [f"{step_dir(3)}/wukong.json"], "a pruned checkpoint must lose its marker first"
    assert checkpointer.complete_steps() == [4] and not folder.exists()


def test_loading_reports_optimizer_state_it_lacks_and_refuses_missing_weights(
    one_rank_group: DistEnv, tmp_path: Path
) -> None:
    checkpointer = Checkpointer(str(tmp_path / "run"), one_rank_group, keep=2)
    checkpointer.save(1, {"model": {"w": torch.ones(2)}, "optim": {"state": {"dense.w": {"m": torch.ones(2)}}}}, {})
    state = {"model": {"w": torch.zeros(2)}, "optim": {"state": {"sparse.w": {"momentum": torch.full((2,), 7.0)}}}}
    _, fresh = checkpointer.load(1, state)
    assert fresh == ["optim.state.sparse.w.momentum"]
    assert state["model"]["w"].tolist() == [1.0, 1.0] and state["optim"]["state"]["sparse.w"]["momentum"][0] == 7
    with pytest.raises(DataError, match=r"has no model.v .* another model or configuration"):
        checkpointer.load(1, {"model": {"v": torch.zeros(2)}})


@pytest.mark.slow
def test_a_checkpoint_loads_under_another_sharding(small_dataset: str, tmp_path: Path) -> None:
    """Replicated tables keep Adam state, sharded ones the fused Adagrad's: a checkpoint with both
    loads with every replicated table sharded and with every sharded one replicated, weights
    exactly, the optimizer state it lacks started afresh and logged."""
    hybrid = ["--data-parallel-max-rows", "199", "--row-wise-min-rows", "200"]  # tables of 196-201 rows
    run = wukong_train(small_dataset, tmp_path / "run", *hybrid, "--max-steps", "4")
    assert run.returncode == 0, run.output[-3000:]
    kinds = {row[0]: row[3] for row in run.card()["sharding_plan"]}
    assert set(kinds.values()) == {"row_wise", "data_parallel"}
    from wukong.train.outputs import export_model

    saved = export_model(tmp_path / "run" / step_dir(4), "wukong", DatasetReader(small_dataset).schema, _tiny())
    arguments = {"data": small_dataset, "output": str(tmp_path / "run"), "result": str(tmp_path / "w.json")}
    shardings = ["table_wise", "data_parallel"]
    seen = run_probe("weights", arguments | {"shardings": shardings, "train": {"batch_size": 256}})  # one process
    for after in shardings:
        resumed = seen[after]
        assert resumed["step"] == 4
        changed = sorted(t for t, kind in kinds.items() if (kind == "data_parallel") != (after == "data_parallel"))
        assert (
            f"optimizer state started afresh (saved under another sharding): {', '.join(changed)}\n" in seen["output"]
        )
        loaded = {k.removeprefix("model."): torch.tensor(v) for k, v in resumed["weights"].items()}
        assert set(saved) == set(loaded)
        for key, value in saved.items():
            assert torch.equal(value, loaded[key]), (after, key)


def _tiny():
    return load_config("tiny", ["train.batch_size=256"])


# ---- progress: validation, schedule, divergence --------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch(small_dataset: str, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("epoch") / "run"
    args = ["--epochs", "1", "--max-steps", "100000", "--lr-schedule", "linear", "--warmup-steps", "0"]
    run = wukong_train(small_dataset, folder, *args, "--log-every", "1", "--patience", "1")
    assert run.returncode == 0, run.output[-3000:]
    return run


@pytest.mark.slow
def test_the_schedule_ends_with_the_last_epoch_not_max_steps(one_epoch, small_dataset: str) -> None:
    steps = DatasetReader(small_dataset, "train", 256).batches_per_epoch
    assert one_epoch.card()["steps"] == steps
    lrs = [r["lr"] for r in one_epoch.history() if "loss" in r]
    assert lrs[-1] == pytest.approx(lrs[0] / steps), "linear decay should reach ~0 at the run's last step"


@pytest.mark.slow
def test_a_resume_at_an_epoch_end_does_not_validate_that_step_again(
    one_epoch, small_dataset: str, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(one_epoch.folder, folder)
    first = one_epoch.card()["steps"]
    resumed = wukong_train(small_dataset, folder, "--epochs", "2", "--patience", "1", "--lr-schedule", "linear")
    assert resumed.returncode == 0, resumed.output[-3000:]
    steps = [r["step"] for r in resumed.validations()]
    assert steps == [first, 2 * first], "the epoch end before the resume was validated twice"
    assert resumed.card()["steps"] == 2 * first


@pytest.mark.slow
def test_an_uninterrupted_run_trains_every_epoch(small_dataset: str, tmp_path: Path) -> None:
    """Each epoch gets a fresh iterator of the reader, and each epoch end is validated once."""
    steps = DatasetReader(small_dataset, "train", 256).batches_per_epoch
    run = wukong_train(small_dataset, tmp_path / "run", "--epochs", "3")
    assert run.returncode == 0, run.output[-3000:]
    assert run.card()["steps"] == 3 * steps
    assert run.card()["epochs_completed"] == 3
    assert [r["step"] for r in run.validations()] == [steps, 2 * steps, 3 * steps]


@pytest.mark.slow
def test_validation_and_checkpoints_check_the_loss_first(small_dataset: str, tmp_path: Path) -> None:
    """On GPUs most steps' losses are not looked at (a sync); validating or saving must look first,
    and a validation that predicts NaN (an update broke the weights) must stop too."""
    arguments = {"data": small_dataset, "output": str(tmp_path / "run"), "result": str(tmp_path / "g.json")}
    seen = run_probe("guards", arguments | {"train": {"batch_size": 256}})
    assert seen["validate"].startswith("loss is nan at step 0; stopped, no checkpoint was written")
    assert seen["checkpoint"].startswith("loss is nan at step 0")
    assert seen["checkpoints"] is None, "a diverged model was saved"
    assert seen["nan_weights"].startswith("validation predictions are not finite")
    assert "train.embedding_learning_rate" in seen["validate"] and "never sees" in seen["validate"]
