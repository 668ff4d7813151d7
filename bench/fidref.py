"""`python -m bench fid-ref`: build FID/KID reference statistics once, for the `fid` metric to reuse.

    python -m bench fid-ref --images DIR   [--name NAME] [--results DIR | --refs-dir DIR] ...
    python -m bench fid-ref --array FILE.npy|FILE.npz [--key NAME] [--name NAME] ...
    python -m bench fid-ref --model digits

The features are clean-fid's "clean" Inception features, computed by the same code the `fid` metric
uses (`bench.metrics.fid`: 8-bit images, PIL bicubic to 299x299, TorchScript Inception; the weights
are found as the metric finds them, or given with --inception-path). The result is one `.npz` with
the mean, covariance and features (KID comes from the same features) at
`<refs dir>/<name>_clean_<H>x<W>_inception-<weights hash>.npz` (`bench.metrics.fid_references`); an
existing file is reused unless --force, and a concurrent build of the same reference waits for the
first one and reuses its file (the store's common lock). The refs dir is --refs-dir, else the
references folder of the results root --results (default: $BENCH_RESULTS, else `results`), i.e.
`<root>/cache/fid-refs` (`bench.store.ResultsRoot.references_dir`) -- where the metric looks by default.
Use the reference in a grid with `metrics: [{name: fid, ref: NAME}]`.

Sources:
  --images DIR  every .png/.jpg/.jpeg file below DIR (recursively, sorted by path), read with PIL and
                converted to RGB as clean-fid does; all must have the same size. Streamed in batches,
                so large folders do not need to fit in memory. Default name: the folder's name.
  --array FILE  a .npy, or a .npz (the array --key, else its only array, else `images`, `x` or
                `arr_0`) of images [N, H, W] (grayscale), [N, H, W, C] or [N, C, H, W] with C = 1 or 3
                (a last axis of size 1 or 3 means channels-last). uint8 (or integer) arrays hold pixels
                0..255; floating-point arrays hold the harness's sample range [-1, 1] and are quantized
                like samples (`bench.images.to_uint8`); a float array outside [-1, 1] is refused (save
                0..255 data as uint8). Default name: the file's stem.
  --model NAME  the model's training set (`training_images()`, e.g. the 1797 `digits`), under the
                model's name -- the reference the `fid` metric builds for that model on first use.
--limit N keeps the first N images (for a quick check; give such a reference its own --name).

Progress: a bar on a terminal (the extractor's); without one (CI, nohup, Slurm logs) plain lines with
an ETA, as `run` prints them (`bench.progress.Progress`), counting the images whose features are done
(at each batch boundary the extractor asks for the next image, so every image before it is done).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError

# numpy, torch and PIL are imported inside the functions, so that building the CLI's parser stays cheap.

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `fid-ref` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "fid-ref", help="build FID/KID reference statistics (clean-fid Inception features) once",
        description=__doc__.split("\n")[0], epilog="Details: bench/fidref.py and bench/metrics/fid.py.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of PNG/JPG images (recursive)")
    source.add_argument("--array", metavar="FILE", help=".npy/.npz of images: uint8 0..255 or float in [-1, 1]")
    source.add_argument("--model", metavar="NAME", help="a model's training set, e.g. digits")
    p.add_argument("--name", help="dataset name (default: folder name, file stem or model name)")
    p.add_argument("--key", help="array name inside a .npz")
    p.add_argument("--results", help="results root; references go to <results>/cache/fid-refs "
                                     "(default: $BENCH_RESULTS or results)")
    p.add_argument("--refs-dir", help="store the reference here instead")
    p.add_argument("--inception-path", help="TorchScript Inception weights (default: as the fid metric finds them)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--batch", type=int, default=50, help="Inception batch size (default: 50)")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--force", action="store_true", help="rebuild even if the reference exists")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_fid_ref)
    return p


# ---------------------------------------------------------------------------- sources


def folder_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--images {folder}: no such folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"--images {folder}: no .png/.jpg/.jpeg files in it")
    return files


def read_rgb(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def iter_folder(files: list[Path], size: tuple[int, int]):
    """[H, W, 3] uint8 arrays of the files, checking that every image has the first one's size."""
    for path in files:
        img = read_rgb(path)
        if img.shape[:2] != size:
            raise UserError(f"--images: {path} is {img.shape[0]}x{img.shape[1]}, the first image {size[0]}x{size[1]}; "
                            f"a reference needs images of one size")
        yield img


def load_array(path, key: str | None = None):
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--array {path}: no such file")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix.lower() != ".npz":
        raise UserError(f"--array {path}: expected a .npy or .npz file")
    with np.load(path, allow_pickle=False) as data:
        names = list(data.keys())
        if key is None:
            if len(names) == 1:
                key = names[0]
            else:
                key = next((k for k in ("images", "x", "arr_0") if k in names), None)
        if key is None or key not in names:
            raise UserError(f"--array {path}: pick the images with --key, one of: {', '.join(names) or 'none'}")
        return data[key]


def array_to_uint8(array, what: str = "--array"):
    """Images [N, H, W], [N, H, W, C] or [N, C, H, W] -> uint8 torch [N, C, H, W] (rules in the module docstring)."""
    import numpy as np
    import torch

    from .images import to_uint8

    a = np.asarray(array)
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[3] in (1, 3):
            a = a.transpose(0, 3, 1, 2)
        elif a.shape[1] not in (1, 3):
            raise UserError(f"{what}: shape {a.shape} has no channel axis of size 1 or 3")
    else:
        raise UserError(f"{what}: expected images [N, H, W], [N, H, W, C] or [N, C, H, W], got shape {a.shape}")
    if a.shape[0] == 0:
        raise UserError(f"{what}: the array holds no images")
    if a.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(a))
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        if a.min() < 0 or a.max() > 255:
            raise UserError(f"{what}: integer pixels must be in 0..255, got {a.min()}..{a.max()}")
        return torch.from_numpy(np.ascontiguousarray(a.astype(np.uint8)))
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise UserError(f"{what}: the array has non-finite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
            raise UserError(f"{what}: floating-point images must be in [-1, 1], got {lo:.4g}..{hi:.4g}; "
                            f"save 0..255 pixels as uint8")
        return to_uint8(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)))
    raise UserError(f"{what}: unsupported dtype {a.dtype}")


# ---------------------------------------------------------------------------- the command


def refs_dir_of(args):
    """The reference store the arguments name (`bench.metrics.fid_references.ReferenceStore`)."""
    import os

    from .metrics.fid_references import ReferenceStore

    if args.refs_dir:
        return ReferenceStore.of_folder(args.refs_dir)
    return ReferenceStore.of_root(args.results or os.environ.get("BENCH_RESULTS") or None)


def build(args) -> Path:
    """Build (or find) the reference the arguments describe; returns its path."""
    from .metrics import fid, fid_references

    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    if args.limit is not None and args.limit < 2:
        raise UserError(f"--limit must be >= 2, got {args.limit}")
    progress = False if args.quiet else None
    refs_dir = refs_dir_of(args)
    extractor = fid.get_extractor(args.inception_path, args.device, args.batch)
    limit = slice(None, args.limit)

    if args.images:
        files = folder_files(args.images)[limit]
        name = args.name or Path(args.images).resolve().name
        first = read_rgb(files[0])
        size = tuple(first.shape[:2])
        images, total = (lambda: iter_folder(files, size)), len(files)
        source = f"images {Path(args.images).resolve()} ({len(files)} files)"
    elif args.array:
        pixels = array_to_uint8(load_array(args.array, args.key))[limit]
        name = args.name or Path(args.array).stem
        size, images, total = tuple(pixels.shape[2:]), pixels, pixels.shape[0]
        source = f"array {Path(args.array).resolve()}" + (f" [{args.key}]" if args.key else "")
    else:
        from .models import make_model

        model = make_model(args.model)
        pixels = fid_references.model_reference_pixels(model)[limit]
        name = args.name or model.name
        size, images, total = tuple(pixels.shape[2:]), pixels, pixels.shape[0]
        source = f"model {model.name} training_images()"
    if args.limit:
        source += f", first {args.limit}"

    path = refs_dir.path(name, size, extractor.tag)
    existed = path.exists() and not args.force
    lines = _Lines(total, args.batch, f"fid-ref {name} images", quiet=args.quiet)
    path = fid_references.build_reference(extractor, lines.wrap(images), name, size, refs_dir, source, total=total,
                                          force=args.force, progress=progress)
    lines.close()
    ref = fid_references.load_reference(path)
    if not args.quiet:
        state = "exists (use --force to rebuild)" if existed else "written"
        print(f"{path}: {state}; {ref.n} images of {size[0]}x{size[1]} ({ref.meta.get('source')}), Inception weights "
              f"{extractor.weights.short} from {extractor.weights.source}; use it as metric fid with ref: {name}",
              file=sys.stderr)
    return path


class _Lines:
    """Progress lines (no terminal) while the extractor takes the images batch by batch."""

    def __init__(self, total: int, batch: int, desc: str, quiet: bool):
        from .progress import Progress

        self.batch, self.counted, self.pulled = batch, 0, 0
        self.progress = None if quiet or sys.stderr.isatty() else Progress(total, desc, unit="img")

    def wrap(self, images):
        """`images` (a tensor, an iterable or a callable returning either) counted as they are taken."""
        if self.progress is None:
            return images
        if callable(images):
            return lambda: self._count(images())
        return lambda: self._count(images)

    def _count(self, images):
        import torch

        from .metrics.inception import iter_hwc

        for img in iter_hwc(images) if isinstance(images, torch.Tensor) else images:
            if self.pulled and self.pulled % self.batch == 0:
                self.progress.update(self.pulled - self.counted)
                self.counted = self.pulled
            self.pulled += 1
            yield img

    def close(self):
        if self.progress is not None and self.pulled > self.counted:  # the last batch (nothing if reused)
            self.progress.update(self.pulled - self.counted)
            self.counted = self.pulled
        if self.progress is not None:
            self.progress.close()


def cmd_fid_ref(args):
    print(build(args))


__all__ = ["add_parser", "array_to_uint8", "build", "cmd_fid_ref", "folder_files", "load_array"]
