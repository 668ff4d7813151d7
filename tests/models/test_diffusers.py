"""diffusers adapters on tiny random networks saved to tmp_path: schedules and conversions against
diffusers' own schedulers, full cells through the runner, decoding, and the pre-run path check."""
from __future__ import annotations

import json

import pytest
import torch

from bench.__main__ import main
from bench.errors import UserError
from bench.grid import parse_grid
from bench.launch import run_local
from bench.models import make_model
from bench.preflight import check_paths
from bench.runner import decode

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PROMPTS = ["a red cube", "a blue ball", "green grass"]


# ---------------------------------------------------------------------------- tiny components
def write_tokenizer(folder):
    """A character-level CLIP BPE tokenizer: every letter, with and without the end-of-word mark."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(LETTERS) + [c + "</w>" for c in LETTERS]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)
    tok.save_pretrained(str(folder))
    return len(tokens)


def clip_config(vocab, projection=None):
    kw = dict(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
              max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    if projection:
        kw["projection_dim"] = projection
    return transformers.CLIPTextConfig(**kw)


def tiny_unet(channels=3, size=8, **kw):
    return diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), **kw)


def tiny_vae(**kw):
    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                                   block_out_channels=(8, 16), norm_num_groups=4, sample_size=8,
                                   down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                                   up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), **kw)


def save_pixel(folder, prediction_type="epsilon", beta_schedule="linear"):
    torch.manual_seed(0)
    tiny_unet().save_pretrained(folder / "unet")
    diffusers.DDPMScheduler(beta_schedule=beta_schedule, prediction_type=prediction_type,
                            clip_sample=False).save_pretrained(folder / "scheduler")
    return str(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    torch.manual_seed(0)
    out = {"pixel": save_pixel(root / "pixel"), "pixel_v": save_pixel(root / "pixel_v", "v_prediction")}

    ldm = root / "ldm"
    tiny_unet(channels=4, size=4).save_pretrained(ldm / "unet")
    tiny_vae().save_pretrained(ldm / "vae")
    diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2").save_pretrained(ldm / "scheduler")
    out["ldm"] = str(ldm)

    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    out["prompts"] = str(prompts)

    sd = root / "sd"
    vocab = write_tokenizer(sd / "tokenizer")
    diffusers.UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).save_pretrained(sd / "unet")
    tiny_vae().save_pretrained(sd / "vae")
    transformers.CLIPTextModel(clip_config(vocab)).save_pretrained(sd / "text_encoder")
    diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                            prediction_type="v_prediction").save_pretrained(sd / "scheduler")
    out["sd"] = str(sd)

    sd3 = root / "sd3"
    write_tokenizer(root / "tok")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(root / "tok"))
    pipe = diffusers.StableDiffusion3Pipeline(
        transformer=diffusers.SD3Transformer2DModel(
            sample_size=4, patch_size=1, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
            num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=16),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(shift_factor=0.1, scaling_factor=1.5),
        text_encoder=transformers.CLIPTextModelWithProjection(clip_config(vocab, 8)), tokenizer=tokenizer,
        text_encoder_2=transformers.CLIPTextModelWithProjection(clip_config(vocab, 8)), tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None,
    )
    pipe.save_pretrained(str(sd3))
    out["sd3"] = str(sd3)
    return out


# ---------------------------------------------------------------------------- schedules and conversions
@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_vp_schedule_matches_diffusers_alphas_cumprod(tmp_path, beta_schedule):
    path = tmp_path / "m"
    diffusers.DDPMScheduler(beta_schedule=beta_schedule).save_pretrained(path / "scheduler")
    tiny_unet().save_pretrained(path / "unet")
    model = make_model({"name": "diffusers-unet", "path": str(path)})
    reference = diffusers.DDPMScheduler(beta_schedule=beta_schedule).alphas_cumprod.double()
    n = torch.arange(1000, dtype=torch.float64)
    t = (n + 1) / 1000  # knot n of DPM-Solver's discrete time
    # diffusers accumulates the product in float32: ~1e-5 relative at the last step of the cosine schedule
    torch.testing.assert_close(model.schedule.alpha(t) ** 2, reference, rtol=3e-5, atol=0)
    torch.testing.assert_close(model.schedule.step_index(t), n)


def test_eps_and_v_readings_agree_and_match_diffusers_step(folders):
    """The eps UNet N read as eps, and the v-prediction network v = (eps - sigma x) / alpha built from N
    with diffusers' own alphas_cumprod at the step the adapter passes, give the same x0. Both also
    match DDPMScheduler.step's pred_original_sample. A wrong conversion formula, a time -> step
    mapping off by one step or an alpha that is not the one of that step would each break this."""
    eps_model = make_model({"name": "diffusers-unet", "path": folders["pixel"]})
    v_model = make_model({"name": "diffusers-unet", "path": folders["pixel_v"]})
    assert (eps_model.prediction_type, v_model.prediction_type) == ("epsilon", "v_prediction")
    scheduler = diffusers.DDPMScheduler(clip_sample=False)
    acp = scheduler.alphas_cumprod.double()
    steps = torch.tensor([0, 1, 10, 250, 600, 900], dtype=torch.float64)
    t = (steps + 1) / 1000
    x = torch.randn(len(steps), 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0_eps = eps_model(x, t)
    unet = eps_model.unet

    class AsV(torch.nn.Module):  # the same network, re-parametrised to predict v
        dtype = unet.dtype

        def forward(self, xs, timestep, class_labels=None):
            eps = unet(xs, timestep).sample.double()
            a = acp[timestep.round().long()].sqrt().reshape(-1, 1, 1, 1)
            return type("Out", (), {"sample": (eps - (1 - a * a).sqrt() * xs.double()) / a})()

    v_model.load()
    v_model.unet = AsV()
    torch.testing.assert_close(v_model(x, t), x0_eps, rtol=1e-5, atol=1e-5)

    # Independent reference: diffusers' scheduler converts the same outputs to x0 itself.
    with torch.no_grad():
        eps = unet(x.float(), steps.float()).sample
    for i, n in enumerate(steps.long().tolist()):
        ref = scheduler.step(eps[i : i + 1], n, x[i : i + 1].float()).pred_original_sample
        torch.testing.assert_close(x0_eps[i : i + 1].float(), ref, rtol=1e-4, atol=1e-4)
    # The test can fail: reading the eps network as v gives something else.
    v_model.unet = unet
    assert (v_model(x, t) - x0_eps).abs().max() > 1e-2


def test_flow_time_and_velocity_match_diffusers_scheduler(folders):
    model = make_model({"name": "sd3", "path": folders["sd3"], "prompts": folders["prompts"]})
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    assert model.schedule.shift == 3.0 and model.data_shape == (4, 4, 4) and model.num_classes == 3
    # Training grid: unshifted u = j / N  <->  diffusers' shifted sigmas and timesteps = sigma N.
    j = torch.arange(1000, 0, -1, dtype=torch.float64)
    torch.testing.assert_close(model.schedule.sigma(j / 1000), scheduler.sigmas.double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(model.schedule.sigma(j / 1000) * 1000, scheduler.timesteps.double(), rtol=1e-6, atol=0)
    u = torch.tensor([0.01, 0.3, 0.7, 0.95], dtype=torch.float64)
    x = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cond = torch.tensor([0, 2, -1, 1])
    x0 = model(x, u, cond)
    sigma = model.schedule.sigma(u)
    with torch.no_grad():
        v = model.transformer(hidden_states=x.float(), timestep=(sigma * 1000).float(),
                              encoder_hidden_states=model.prompt_embeds[cond + 1],
                              pooled_projections=model.pooled_embeds[cond + 1]).sample.double()
    torch.testing.assert_close(x0, x - sigma.reshape(-1, 1, 1, 1) * v, rtol=1e-6, atol=1e-6)
    # One Euler step of diffusers from sigma_a to sigma_b is the harness's DDIM step with this x0.
    a, b = model.schedule.sigma(u[1]), model.schedule.sigma(u[0])
    x_b = (1 - b) * x0[1] + b * (x[1] - (1 - a) * x0[1]) / a
    torch.testing.assert_close(x_b, x[1] + (b - a) * v[1], rtol=1e-5, atol=1e-5)


def test_prompt_conditions_and_unconditional_row(folders):
    model = make_model({"name": "stable-diffusion", "path": folders["sd"], "prompts": folders["prompts"]})
    assert model.num_classes == 3 and model.prediction_type == "v_prediction"
    assert model.schedule.spec()["name"] == "vp-scaled-linear"
    x = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    t = torch.full((3,), 0.5)
    out = model(x, t, torch.tensor([0, 1, -1]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert model.prompt_embeds.shape[0] == 4  # empty prompt + 3 prompts
    torch.testing.assert_close(model(x, t, None), model(x, t, torch.tensor([-1, -1, -1])))
    assert not torch.allclose(out[0], model(x[:1], t[:1], torch.tensor([1]))[0])
    guided = make_model({"name": "stable-diffusion", "path": folders["sd"], "prompts": folders["prompts"],
                         "guidance": 3.0})
    c = torch.tensor([0, 1, 2])
    expect = model(x, t, torch.full_like(c, -1)) + 3.0 * (model(x, t, c) - model(x, t, torch.full_like(c, -1)))
    torch.testing.assert_close(guided(x, t, c), expect, rtol=1e-5, atol=1e-5)
    assert guided.evals_per_call == 2


def test_latent_models_decode_to_images(folders):
    model = make_model({"name": "diffusers-ldm", "path": folders["ldm"]})
    assert model.data_shape == (4, 4, 4)
    z = torch.randn(5, 4, 4, 4, dtype=torch.float64)
    images = decode(model, z, batch_size=2)
    assert images.shape == (5, 3, 8, 8) and images.dtype == torch.float64
    pixel = make_model({"name": "diffusers-unet", "path": folders["pixel"]})
    assert decode(pixel, z, 2) is not None and torch.equal(pixel.decode(z), z)  # identity by default
    sd3 = make_model({"name": "sd3", "path": folders["sd3"]})
    expect = sd3.load().vae.decode((z[:2] / 1.5 + 0.1).float()).sample.double()
    torch.testing.assert_close(sd3.decode(z[:2]), expect)


# ---------------------------------------------------------------------------- full cells
LD3 = {"name": "ld3", "train": 2, "val": 2, "batch": 2, "rounds1": 1, "rounds2": 1, "loss": "l2", "init": "uniform"}


@pytest.mark.parametrize("kind", ["pixel", "ldm", "sd", "sd3"])
def test_full_cells_through_the_runner(folders, tmp_path, kind):
    spec = {"pixel": {"name": "diffusers-unet", "path": folders["pixel"]},
            "ldm": {"name": "diffusers-ldm", "path": folders["ldm"]},
            "sd": {"name": "stable-diffusion", "path": folders["sd"], "prompts": folders["prompts"], "guidance": 2.0},
            "sd3": {"name": "sd3", "path": folders["sd3"], "prompts": folders["prompts"]}}[kind]
    grid = parse_grid({
        "name": kind, "models": [spec], "solvers": ["euler", "dpmpp-2m"], "nfe": [3], "methods": ["uniform", LD3],
        "metrics": ["mse", "psnr"], "teacher": {"solver": "euler", "steps": 6, "method": "uniform"},
        "samples": {"train": 2, "eval": 3, "batch": 3},
    })
    check_paths(grid.cells)
    run_local(grid, root=tmp_path, quiet=True)
    rows = [json.loads(p.read_text()) for p in (tmp_path / kind / "rows").glob("*.json")]
    assert len(rows) == 4
    for row in rows:
        assert row["nfe_measured"] == row["nfe_expected"] == 3
        assert row["metrics"]["mse"] >= 0 and row["metrics"]["psnr"] == row["metrics"]["psnr"]
    assert {r["method_label"].split("(")[0] for r in rows} == {"uniform", "ld3"}
    assert all(r["fit"]["fit_nfe"] > 0 for r in rows if r["method"]["name"] == "ld3")
    samples = list((tmp_path / kind).rglob("*.png"))
    assert samples  # image grids come from decoded samples (latent models too)


# ---------------------------------------------------------------------------- parameters and paths
@pytest.mark.parametrize("spec, field", [
    ({"name": "diffusers-unet"}, "path"),
    ({"name": "diffusers-ldm", "path": 3}, "path"),
    ({"name": "stable-diffusion", "path": "x", "prompts": ["a"]}, "prompts"),
    ({"name": "stable-diffusion", "path": "x", "guidance": -1}, "guidance"),
    ({"name": "sd3", "path": "x", "t_max": 1.0}, "t_max"),
    ({"name": "sd3", "path": "x", "size": 3}, "size"),
])
def test_bad_parameters_are_one_line_user_errors(spec, field):
    with pytest.raises(UserError, match=field) as err:
        make_model(spec)
    assert "\n" not in str(err.value)


def test_bad_folder_names_the_field_and_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    model = make_model({"name": "diffusers-ldm", "path": str(tmp_path / "empty")})
    with pytest.raises(UserError, match=r"path = .*unet/config.json"):
        model.schedule  # noqa: B018


def test_every_missing_path_is_reported_at_once(tmp_path, write_grid, capsys, folders):
    grid = {
        "name": "missing", "solvers": ["euler"], "nfe": [3], "methods": ["uniform"], "metrics": ["mse"],
        "models": [{"name": "diffusers-unet", "path": str(tmp_path / "no-unet")},
                   {"name": "stable-diffusion", "path": str(tmp_path / "no-sd"), "prompts": str(tmp_path / "p.txt")},
                   {"name": "stable-diffusion", "path": folders["sd"], "prompts": folders["prompts"]}],
    }
    with pytest.raises(UserError) as err:
        check_paths(parse_grid(grid).cells)
    message = str(err.value)
    assert message.startswith("3 missing") and "no-unet" in message and "no-sd" in message and "p.txt" in message
    assert folders["sd"] not in message
    assert make_model("toy2d").required_paths() == {}  # the base contract: no files
    assert main(["run", "--grid", write_grid(grid), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    assert "3 missing" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing ran


def test_shifted_flow_schedule_round_trips_and_keeps_the_plain_spec():
    from bench.schedules import FlowOT

    s = FlowOT(1e-3, 0.999, shift=3.0)
    t = torch.linspace(1e-3, 0.999, 50, dtype=torch.float64)
    torch.testing.assert_close(s.t_of_lambda(s.lambda_(t)), t)
    torch.testing.assert_close(s.alpha(t) + s.sigma(t), torch.ones_like(t))  # still the OT path
    torch.testing.assert_close(s.lambda_(t), torch.log(s.alpha(t) / s.sigma(t)))
    assert "shift" not in FlowOT().spec() and s.spec()["shift"] == 3.0
