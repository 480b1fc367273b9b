"""The process group of a training run: one process, or every rank of a torchrun launch.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain `python -m wv train`
has none and runs alone. NCCL on GPUs, gloo on CPUs.
"""

import datetime
import hashlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from wv.runtime import local_rank, pick_device, rank_and_world


@dataclass
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def start(device: str = "auto", timeout_s: int = 1800) -> World:
    """Join the torchrun process group (if launched under torchrun) and pick this rank's device."""
    rank, size = rank_and_world()
    local = local_rank()
    chosen = pick_device(device)
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local % torch.cuda.device_count())
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), device_id=chosen if chosen.type == "cuda" else None)
    return World(rank, size, local, chosen)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(world: World, values: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over every rank (the tensor itself when alone)."""
    if not world.distributed:
        return values
    backend_device = world.device if dist.get_backend() == "nccl" else torch.device("cpu")
    summed = values.to(backend_device)
    dist.all_reduce(summed)
    return summed.to(values.device)


def sync_buffers(world: World, model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics): DDP broadcasts them before each
    forward, but the last forward of an epoch leaves each rank with its own."""
    if world.distributed:
        for buffer in getattr(model, "module", model).buffers():
            dist.broadcast(buffer, 0)


def all_agree(world: World, value: str) -> list[str]:
    """Every rank's `value`, gathered (a list of one when alone)."""
    if not world.distributed:
        return [value]
    gathered = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def parameter_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer, in order: equal on every rank of a healthy DDP run."""
    digest = hashlib.sha256()
    for name, tensor in getattr(model, "module", model).state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
