"""Programs the training tests run in their own processes (alone, or under torchrun), each driving a
real :class:`wukong.train.loop.Trainer` where the CLI cannot reach, and writing what it saw to a file.

``python -m tests.train.probe <command> <json arguments>``:

- ``steps``: train ``steps`` steps on fixed global batches, rank r of W taking rows ``[r·B/W,
  (r+1)·B/W)`` of each (the same global batches whatever W); writes the loss of every step, the
  dense weights and the replicated tables' weights as every rank has them.
- ``weights``: for each of ``shardings``, build a Trainer with that sharding that resumes from ``output``;
  writes its model's full weights.
- ``guards``: a Trainer whose last loss is NaN, then whose weights are: does it validate or save?
- ``warm``: build a Trainer that starts from the model at ``init_from``; writes its embedding tables
  (whole) and the warm start it recorded.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed._shard.sharded_tensor import ShardedTensor

from wukong.config import load_config
from wukong.data.reader import DatasetReader
from wukong.train.distributed import DistEnv, init_distributed, shutdown
from wukong.train.loop import Trainer, TrainingDiverged


def trainer(args: dict[str, Any], resume: str, env: DistEnv | None = None) -> Trainer:
    cfg = load_config("tiny", [f"train.{k}={v}" for k, v in args.get("train", {}).items()])
    env = env or init_distributed()
    return Trainer(cfg, args["data"], args["output"], env, resume=resume, init_from=args.get("init_from"))


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight whole (sharded tables gathered), keyed as in the model's state dict."""
    out = {}
    for key, value in model.state_dict().items():
        if isinstance(value, ShardedTensor):
            whole = torch.zeros(value.size()) if dist.get_rank() == 0 else None
            value.gather(dst=0, out=whole)
            value = whole
        if value is not None:
            out[key] = value.detach().clone()
    return out


def steps(args: dict[str, Any]) -> dict[str, Any]:
    t = trainer(args, resume=args["resume"])
    world, rank = t.env.world_size, t.env.rank
    if args["resume"] == "never":  # the reference run: writes the initial state the other run resumes from
        t.optimizer.init_state()
        t._checkpoint()
    replicated = [row[0] for row in t.plan_rows if row[3] == "data_parallel"]
    before = {name: _table(t, name) for name in replicated}
    reader = DatasetReader(args["data"], "train", t.local_batch, rank=0, world_size=1, shuffle=False)
    batches = iter([b for i, b in zip(range(args["steps"] * world), reader) if i % world == rank])
    losses = []
    for _ in range(args["steps"]):
        loss = t._step_plain(batches).detach().clone()
        dist.all_reduce(loss)  # the global batch's mean loss: every rank's share is the same size
        losses.append(loss.item() / world)
    tables = {}
    for name in replicated:
        copies = [torch.zeros_like(before[name]) for _ in range(world)]
        dist.all_gather(copies, _table(t, name))
        tables[name] = {"changed": not torch.equal(copies[0], before[name]), "copies": [c.tolist() for c in copies]}
    dense = {k: v.tolist() for k, v in full_weights(t.model).items() if "embedding_bags" not in k}
    return {"losses": losses, "dense": dense, "replicated": tables, "plan": t.plan_rows}


def _table(t: Trainer, name: str) -> torch.Tensor:
    return t.model.state_dict()[f"model.embedding.ebc.embedding_bags.{name}.weight"].detach().clone()


def weights(args: dict[str, Any]) -> dict[str, Any]:
    env, found = init_distributed(), {}
    for sharding in args["shardings"]:
        t = trainer(args | {"train": args.get("train", {}) | {"sharding": sharding}}, "auto", env)
        found[sharding] = {
            "weights": {k: v.tolist() for k, v in full_weights(t.model).items()},
            "step": t.progress.step,
        }
    return found


def warm(args: dict[str, Any]) -> dict[str, Any]:
    from wukong.train.warm_start import recorded

    t = trainer(args, resume="never")
    tables = {k: v.tolist() for k, v in full_weights(t.model).items() if "embedding_bags" in k}
    return {"tables": tables, "report": recorded(t.output), "plan": t.plan_rows}


def guards(args: dict[str, Any]) -> dict[str, Any]:
    t = trainer(args, resume="never")
    seen: dict[str, Any] = {}
    t.unchecked_loss = torch.tensor(float("nan"))  # a GPU step's loss nobody has looked at yet
    for name, action in (("validate", lambda: t._validate(None)), ("checkpoint", t._checkpoint)):
        t.unchecked_loss = torch.tensor(float("nan"))
        try:
            action()
            seen[name] = "went ahead"
        except TrainingDiverged as error:
            seen[name] = str(error)
    seen["checkpoints"] = t.checkpointer.latest()
    with torch.no_grad():  # a finite loss, then an update that broke the weights
        next(p for name, p in t.model.named_parameters() if "dense_arch" in name).fill_(float("nan"))
    try:
        t._validate(None)
        seen["nan_weights"] = "went ahead"
    except TrainingDiverged as error:
        seen["nan_weights"] = str(error)
    return seen


if __name__ == "__main__":
    command, arguments = sys.argv[1], json.loads(sys.argv[2])
    try:
        result = {"steps": steps, "weights": weights, "guards": guards, "warm": warm}[command](arguments)
        if dist.get_rank() == 0:
            with open(arguments["result"], "w") as out:
                json.dump(result, out)
        # No rank tears gloo down while a peer still receives on it (rank 1 aborted at exit in CI once,
        # "terminate called without an active exception", after a gather to rank 0).
        dist.barrier()
    finally:
        shutdown()
