"""The process group: one process per device, started by torchrun (or alone, as a world of one)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    local_world_size: int = 1  # processes on this node (torchrun's LOCAL_WORLD_SIZE): rank r uses device r mod this

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(timeout_s: int = 600) -> DistEnv:
    """Join (or create, for a single process) the default group: nccl on GPUs, gloo on CPU.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT; a plain
    ``python -m wukong.train`` becomes rank 0 of 1 on a free local port.
    """
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is not None and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True):
            # After torchrun restarts the workers, the agent's store may still hold the previous attempt's
            # gloo/nccl addresses; a peer reading one connects to a dead port. Namespace keys per attempt.
            agent = dist.TCPStore(
                os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False, timeout=timeout
            )
            store = dist.PrefixStore(f"wukong/attempt_{restart}", agent)
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)
    world = dist.get_world_size()
    # Processes per node: torchrun says; else one per GPU of this node, or all of them on CPU.
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE") or min(world, torch.cuda.device_count() or world))
    return DistEnv(dist.get_rank(), world, local_rank, device, backend, local_world)


def collective_device() -> torch.device:
    """The device whose tensors the default group's collectives take: the current GPU where the group
    serves CUDA only (NCCL), else the CPU (gloo; a ``cpu:gloo,cuda:nccl`` group takes both)."""
    types = getattr(dist.group.WORLD, "_device_types", None)  # what each backend of the group serves
    served = {d.type for d in types} if types is not None else ({"cuda"} if dist.get_backend() == "nccl" else {"cpu"})
    if "cpu" in served:
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def broadcast_object(value: T, src: int = 0) -> T:
    """``value`` as rank ``src`` has it, on every rank (itself outside a distributed job)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src, device=collective_device())
    return box[0]


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
