"""Which device each task of a phase gets: CUDA devices taken in turn.

`--device cuda` with several visible GPUs spreads tasks over `cuda:0`, `cuda:1`, ... (round robin).
A local run does so only with several worker processes (one process keeps its device) and never
for an explicit `cuda:N`; submitit-local jobs see GPUs 0..n-1 and always spread (`cuda:N` too).
"""
from __future__ import annotations


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def job_device(device: str) -> str:
    """A job sees only the GPUs it was given: `cuda:3` becomes `cuda` inside a job."""
    return device.split(":")[0]


def round_robin(n_tasks: int, count: int) -> list[str]:
    return [f"cuda:{i % count}" for i in range(n_tasks)]


def spread_devices(device: str, n_tasks: int, jobs: int, count: int | None = None) -> list[str]:
    """The device of each of `n_tasks` local tasks: with `--device cuda`, several workers and more
    than one visible CUDA device, `cuda:0`, `cuda:1`, ... in turn; otherwise `device` for all."""
    if jobs <= 1 or device != "cuda":
        return [device] * n_tasks
    count = cuda_device_count() if count is None else count
    if count <= 1:
        return [device] * n_tasks
    return round_robin(n_tasks, count)


def job_devices(device: str, n_tasks: int, count: int | None = None) -> list[str]:
    """The device of each of `n_tasks` submitit-local jobs (each sees every GPU of this machine)."""
    if job_device(device) != "cuda":
        return [device] * n_tasks
    count = cuda_device_count() if count is None else count
    return round_robin(n_tasks, max(count, 1))


__all__ = ["cuda_device_count", "job_device", "job_devices", "spread_devices"]
