"""Teacher sets: pairs (x_T, cond, x0*) where x0* comes from a high-NFE teacher solver.

A teacher set is keyed by plain values only: the model id and schedule, the teacher (solver,
steps, discretization, dtype), the split, the replication seed and the size. x_T and cond are
regenerated from the per-sample seeds (`bench.seeding`); only x0* is stored, under
`<root>/cache/teachers/<hash of the key>.pt` beside its key, which a reader compares with the file's
name and the key it asks for (`bench.store.verify_key`). The teacher integrates in a fixed
batch size on the CPU generator's noise, so regenerating a set gives bit-identical endpoints.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from .registry import METHODS
from .seeding import labels_for, noise_from_seeds, sample_seeds, stable_hash
from .solvers import make_solver
from .store import CorruptArtifact, ResultsRoot, atomic_write_torch, read_torch, verify_key

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TeacherSet:
    seeds: list[int]
    x_T: torch.Tensor
    cond: torch.Tensor | None
    x0: torch.Tensor

    def __len__(self):
        return len(self.seeds)

    def batches(self, batch_size: int):
        """Yield (x_T, cond, x0) slices of at most batch_size samples."""
        for i in range(0, len(self), batch_size):
            sl = slice(i, i + batch_size)
            yield self.x_T[sl], None if self.cond is None else self.cond[sl], self.x0[sl]


def priors(model, split: str, seed: int, n: int, device=None, dtype=torch.float32):
    """(seeds, x_T, cond) of the first n priors of a split: x_T = sigma(t_max) * seeded noise."""
    seeds = sample_seeds(split, seed, n)
    noise = noise_from_seeds(seeds, model.data_shape)
    x_T = model.prior(noise.to(dtype=dtype)).to(device)
    cond = labels_for(range(n), model.num_classes)
    return seeds, x_T, None if cond is None else cond.to(device)


def teacher_key(model, teacher: dict, split: str, seed: int, n: int, key_parts: dict | None = None) -> dict:
    """The plain values a teacher set depends on. The runner passes `key_parts`: the resolved model
    (its version and the content hashes of its files) and the resolved teacher (plugin versions)."""
    return {
        "model": model.model_id(),
        "schedule": model.schedule.spec(),
        "teacher": teacher,
        "split": split,
        "seed": seed,
        "n": n,
        **(key_parts or {}),
    }


def run_teacher(model, teacher: dict, x_T, cond, batch_size: int):
    """Integrate the teacher from x_T in its dtype and return x0* in x_T's dtype."""
    solver = make_solver(teacher["solver"])
    method = METHODS.build(teacher["method"]).bind(model.schedule, teacher["steps"], solver)
    dtype = DTYPES[teacher.get("dtype", "float64")]
    outputs = []
    with torch.no_grad():
        for i in range(0, x_T.shape[0], batch_size):
            xb = x_T[i : i + batch_size].to(dtype)
            cb = None if cond is None else cond[i : i + batch_size]
            disc = method.discretize(xb, cb)
            outputs.append(solver.sample(model, xb, disc, cb).to(x_T.dtype))
    return torch.cat(outputs) if outputs else x_T.new_empty((0,) + tuple(x_T.shape[1:]))


def teacher_set(model, teacher: dict, split: str, seed: int, n: int, root: ResultsRoot,
                batch_size: int = 4096, device=None, dtype=torch.float32, key_parts: dict | None = None) -> TeacherSet:
    """The cached teacher set; computed and stored on first use (one writer at a time). A file
    that does not load, holds another key, or fails its checksum is quarantined and recomputed."""
    seeds, x_T, cond = priors(model, split, seed, n, device=device, dtype=dtype)
    key = teacher_key(model, teacher, split, seed, n, key_parts)
    key_hash = stable_hash(key)
    path = root.teacher_path(key_hash)
    x0 = _load(path, key, root)
    if x0 is None:
        with root.teacher_lock(key_hash):
            x0 = _load(path, key, root)  # another process may have written it meanwhile
            if x0 is None:
                x0 = run_teacher(model, teacher, x_T, cond, batch_size).detach().cpu()
                atomic_write_torch(path, {"key": key, "x0": x0, "sha256": tensor_sha256(x0)})
    return TeacherSet(seeds, x_T, cond, x0.to(device=device, dtype=dtype))


def tensor_sha256(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


def _load(path, key: dict, root: ResultsRoot) -> torch.Tensor | None:
    if not path.exists():
        return None
    try:
        stored = read_torch(path, map_location="cpu", weights_only=True)
        if not isinstance(stored, dict) or not isinstance(stored.get("x0"), torch.Tensor):
            raise CorruptArtifact(path, "not a teacher set written by bench")
        verify_key(path, path.stem, stored.get("key"))  # a teacher set copied or moved under another key
        verify_key(path, key, stored.get("key"))
        if stored.get("sha256") != tensor_sha256(stored["x0"]):
            raise CorruptArtifact(path, "checksum mismatch")
    except CorruptArtifact as err:  # an unreadable teacher file is set aside and recomputed
        root.quarantine(path, err.reason)
        return None
    return stored["x0"]
