"""The schedulers users pick from menus, pinned to their reference implementations (float64, 1e-12).

REF holds the values printed by the reference code run outside this repository, in float64
(/tmp script; torch's default dtype set to float64 and ComfyUI's `torch.FloatTensor` made float64, so the
references' own float32 rounding does not enter):
  * k-diffusion v0.1.1 (crowsonkb/k-diffusion, commit 045515774882014cc14c1ba2668ab5bad9cbf7c0),
    `k_diffusion/sampling.py`: get_sigmas_karras / _exponential / _polyexponential (rho=2) with
    (n = N + 1, sigma_min = 0.002, sigma_max = 80), get_sigmas_vp(N + 1) with its defaults;
  * ComfyUI `comfy/samplers.py` (normal_scheduler, simple_scheduler, ddim_scheduler,
    linear_quadratic_schedule with sigma_max = 1, kl_optimal_scheduler) on a float64 stand-in of
    `ModelSamplingDiscrete` for Stable Diffusion's scaled-linear table (betas = linspace(sqrt(0.00085),
    sqrt(0.012), 1000)^2); `comfy/k_diffusion/sampling.py: get_sigmas_laplace` (mu = 0, beta = 0.5);
    the AlignYourStepsScheduler node (comfy_extras/nodes_align_your_steps.py, commit
    a0f6703f051416ba8d10cc90a4f10b8124fcbb38) and the OptimalStepsScheduler node (nodes_optimalsteps.py,
    commit 36d3468fce685fd8f4548347067097282216d4a5), denoise = 1.
Keys are NAME_N for N steps (ComfyUI's `steps`, or n = N + 1 values for the functions taking n).
The harness's N steps end at the model's t_min where the references append 0 (docs/schedulers.md).
"""
import math

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.registry import METHODS
from bench.schedules import VE, FlowOT, VPLinear, VPScaledLinear

RTOL = 1e-12

REF = {
    'karras_3': [80.0, 9.723201355260132, 0.4699790579977467, 0.002000000000000003, 0.0],
    'exponential_3': [79.99999999999997, 2.3392141905702926, 0.06839903786706789, 0.0020000000000000005, 0.0],
    'polyexponential2_3': [79.99999999999997, 0.22201892311392488, 0.006491872694040338, 0.0020000000000000005, 0.0],
    'vp_3': [152.1669702839464, 9.4031965545555, 1.4619718278116118, 0.010485992786706403, 0.0],
    'laplace_3': [80.0, 1.2247356859083902, 0.8165027046291191, 0.003162277660168379],
    'kl_optimal_3': [79.99999999999964, 1.701787130778231, 0.5735789370496017, 0.002, 0.0],
    'normal_3': [14.614641229333637, 2.9183071154268285, 0.9323579668348474, 0.029167158151720367, 0.0],
    'sgm_uniform_3': [14.614641229333637, 2.9183071154268285, 0.9323579668348474, 0.0],
    'simple_3': [14.614641229333639, 2.9183071154268285, 0.9323579668348474, 0.0],
    'ddim_uniform_3': [2.929548754176115, 0.935509819238228, 0.04131441199678309, 0.0],
    'linear_quadratic_3': [1.0, 0.975, 0.71875, 0.0],
    'ays_SD1_3': [14.614641229299998, 2.391697369619659, 0.7431215272146431, 0.0],
    'ays_SDXL_3': [14.614641229299998, 1.8544495306252373, 0.4310492894033884, 0.0],
    'ays_SVD_3': [699.9999999999998, 6.465784573469791, 0.5421170085928548, 0.0],
    'ost_FLUX_3': [0.9968, 0.9719907216001986, 0.856771685664702, 0.0],
    'ost_Wan_3': [1.0, 0.9856662159623268, 0.93962378637384, 0.0],
    'ost_Chroma_3': [0.992, 0.8936215685830261, 0.37002203423685376, 0.0],
    'karras_5': [80.0, 24.408341786580095, 5.838947631011886, 0.9654169263318955, 0.08508720268939021, 0.002000000000000003, 0.0],
    'exponential_5': [79.99999999999997, 9.608995471851447, 1.1541599247257706, 0.1386289686310293, 0.01665106414803746, 0.0020000000000000005, 0.0],
    'polyexponential2_5': [79.99999999999997, 1.763390066951849, 0.09073432078279318, 0.010898320969292217, 0.0030557118284467023, 0.0020000000000000005, 0.0],
    'vp_5': [152.1669702839464, 25.148852404503796, 6.11166250604724, 2.0344293401724496, 0.7238067666812986, 0.010485992786706403, 0.0],
    'laplace_5': [80.0, 1.5811190662193852, 1.1180270011029743, 0.8944327811523904, 0.6324634376784163, 0.003162277660168379],
    'kl_optimal_5': [79.99999999999964, 2.980038326595726, 1.3571672807241477, 0.7207529951808902, 0.3239251128214752, 0.002, 0.0],
    'normal_5': [14.614641229333637, 5.09240759066568, 2.2797302952441267, 1.162864534085147, 0.5711888666489997, 0.029167158151720367, 0.0],
    'sgm_uniform_5': [14.614641229333637, 5.09240759066568, 2.2797302952441267, 1.162864534085147, 0.5711888666489997, 0.0],
    'simple_5': [14.614641229333639, 5.087763182678662, 2.2764630657646574, 1.1605783219528756, 0.5692848883499537, 0.0],
    'ddim_uniform_5': [5.134431117517536, 2.292853821788702, 1.1682159550479787, 0.5740502594628525, 0.04131441199678309, 0.0],
    'linear_quadratic_5': [1.0, 0.9875, 0.975, 0.8583333333333332, 0.5333333333333332, 0.0],
    'ays_SD1_5': [14.614641229299998, 3.8636745985, 1.8841921177, 0.9642583904, 0.3977456272, 0.0],
    'ays_SDXL_5': [14.614641229299998, 3.7681790315, 1.3405244945, 0.5550693289, 0.2332364134, 0.0],
    'ays_SVD_5': [699.9999999999998, 15.885999999999996, 4.248, 0.981, 0.173, 0.0],
    'ost_FLUX_5': [0.9968, 0.9819, 0.966, 0.9158, 0.5512, 0.0],
    'ost_Wan_5': [1.0, 0.991, 0.98, 0.96, 0.864, 0.0],
    'ost_Chroma_5': [0.992, 0.961, 0.832, 0.501, 0.169, 0.0],
    'karras_10': [80.0, 45.313734075226606, 24.408341786580095, 12.381576138540881, 5.838947631011886, 2.515218976147159, 0.9654169263318955, 0.31828328883929663, 0.08508720268939021, 0.01672075323499393, 0.002000000000000003, 0.0],
    'exponential_10': [79.99999999999997, 27.72579372620585, 9.608995471851447, 3.3302128296074915, 1.1541599247257706, 0.4000000000000001, 0.1386289686310293, 0.04804497735925727, 0.01665106414803746, 0.005770799623628854, 0.0020000000000000005, 0.0],
    'polyexponential2_10': [79.99999999999997, 10.683131854906621, 1.763390066951849, 0.35978196665009454, 0.09073432078279318, 0.028284271247461905, 0.010898320969292217, 0.005190574094332046, 0.0030557118284467023, 0.0022235689227249078, 0.0020000000000000005, 0.0],
    'vp_10': [152.1669702839464, 58.88028701551522, 25.148852404503796, 11.837821352312584, 6.11166250604724, 3.4222447625721584, 2.0344293401724496, 1.2385012917128078, 0.7238067666812986, 0.3432633457532453, 0.010485992786706403, 0.0],
    'laplace_10': [80.0, 2.236012077896579, 1.5811190662193852, 1.2909836905832095, 1.1180270011029743, 1.0, 0.8944327811523904, 0.7746031241868316, 0.6324634376784163, 0.4472247757000946, 0.003162277660168379],
    'kl_optimal_10': [79.99999999999964, 5.891663302645836, 2.980038326595726, 1.9236918350868664, 1.3571672807241477, 0.9895553832181438, 0.7207529951808902, 0.5065691292276284, 0.3239251128214752, 0.15894835087797715, 0.002, 0.0],
    'normal_10': [14.614641229333637, 8.307172173464526, 5.09240759066568, 3.3250691492274727, 2.2797302952441267, 1.6155802601603273, 1.162864534085147, 0.8318836933737807, 0.5711888666489997, 0.3437048175085523, 0.029167158151720367, 0.0],
    'sgm_uniform_10': [14.614641229333637, 8.307172173464526, 5.09240759066568, 3.3250691492274727, 2.2797302952441267, 1.6155802601603273, 1.162864534085147, 0.8318836933737807, 0.5711888666489997, 0.3437048175085523, 0.0],
    'simple_10': [14.614641229333639, 8.302803191053336, 5.087763182678662, 3.321083129846573, 2.2764630657646574, 1.612886194303876, 1.1605783219528756, 0.8298595281753968, 0.5692848883499537, 0.3416738322812819, 0.0],
    'ddim_uniform_10': [8.390684770218579, 5.134431117517536, 3.3477635806615926, 2.292853821788702, 1.623692081515863, 1.1682159550479787, 0.8356528080331495, 0.5740502594628525, 0.34618670638077037, 0.04131441199678309, 0.0],
    'linear_quadratic_10': [1.0, 0.995, 0.99, 0.985, 0.98, 0.9750000000000001, 0.9320000000000002, 0.8130000000000002, 0.6180000000000001, 0.3470000000000002, 0.0],
    'ays_SD1_10': [14.6146412293, 6.4745760956, 3.8636745985, 2.694615152, 1.8841921177, 1.3943805092, 0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0],
    'ays_SDXL_10': [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0],
    'ays_SVD_10': [700.0, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.0],
    'ost_FLUX_10': [0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808, 0.0],
    'ost_Wan_10': [1.0, 0.995, 0.991, 0.987, 0.98, 0.973, 0.96, 0.927, 0.864, 0.539, 0.0],
    'ost_Chroma_10': [0.992, 0.982, 0.961, 0.917, 0.832, 0.69, 0.501, 0.311, 0.169, 0.08399999999999999, 0.0],
    'ddim_uniform_7': [14.265108680664358, 6.570649591890106, 3.485454825322451, 2.0473118037464233, 1.2720629536927497, 0.7900609565844144, 0.44030901383158033, 0.04131441199678309, 0.0],
}


def _sigmas(name, schedule, steps, **params):
    t = METHODS.create(name, **params).bind(schedule, steps).timesteps()
    assert t.dtype == torch.float64 and t[0] == schedule.t_max and t[-1] == schedule.t_min
    return schedule.sigma_ve(t).numpy()


def _close(ours, ref, rtol=RTOL):
    np.testing.assert_allclose(ours, np.asarray(ref, dtype=np.float64), rtol=rtol, atol=0)


@pytest.mark.parametrize("steps", [3, 5, 10])
@pytest.mark.parametrize("name, key, params", [
    ("karras", "karras", {}), ("edm", "karras", {}), ("exponential", "exponential", {}), ("logsnr", "exponential", {}),
    ("polyexponential", "polyexponential2", {"rho": 2.0}), ("kl_optimal", "kl_optimal", {}),
])
def test_k_diffusion_and_comfyui_sigma_schedules_on_ve(name, key, params, steps):
    """n = N + 1 reference values and a trailing 0 = the harness's N + 1 knots on VE(0.002, 80)."""
    ref = REF[f"{key}_{steps}"]
    assert ref[-1] == 0 and len(ref) == steps + 2
    _close(_sigmas(name, VE(), steps, **params), ref[:-1])


def test_aliases_are_the_same_class_and_listed():
    for alias, target in (("karras", "edm"), ("exponential", "logsnr"), ("kl_optimal", "kl-optimal"),
                          ("sgm_uniform", "normal")):
        assert METHODS.get(alias) is METHODS.get(target)
        assert (alias, target) in {(a, t) for a, t, _ in METHODS.aliases()}
    assert METHODS.get("polyexponential") is not METHODS.get("logsnr")
    _close(_sigmas("polyexponential", VE(), 7), _sigmas("logsnr", VE(), 7))  # rho = 1


@pytest.mark.parametrize("steps", [3, 5, 10])
def test_vp_is_get_sigmas_vp_on_the_vp_sde_range(steps):
    ref = REF[f"vp_{steps}"]
    _close(_sigmas("vp", VPLinear(), steps), ref[:-1])
    np.testing.assert_allclose(METHODS.create("vp").bind(VPLinear(), steps).timesteps().numpy(),
                               np.linspace(1, 1e-3, steps + 1), rtol=1e-12)  # = uniform on that model


@pytest.mark.parametrize("steps", [3, 5, 10])
def test_laplace_is_comfyuis_with_the_last_value_at_sigma_min(steps):
    ref = REF[f"laplace_{steps}"]  # n = N + 1 values, no trailing 0 (the node's form)
    ours = _sigmas("laplace", VE(), steps)
    _close(ours[:-1], ref[:-1])
    assert ref[-1] == pytest.approx(np.exp(0.5 * np.log(1e-5))) and ours[-1] == pytest.approx(0.002, rel=1e-15)


@pytest.mark.parametrize("steps", [3, 5, 10])
def test_comfyui_discrete_schedulers_on_stable_diffusions_table(steps):
    s = VPScaledLinear()
    sigma_min = float(s.sigma_ve(torch.tensor(s.t_min, dtype=torch.float64)))
    normal = REF[f"normal_{steps}"]  # normal_scheduler(N + 1): N + 1 values and 0
    _close(_sigmas("normal", s, steps), normal[:-1])
    sgm = REF[f"sgm_uniform_{steps}"]  # sgm: N values and 0; the harness ends at sigma_min instead of 0
    _close(_sigmas("sgm_uniform", s, steps)[:-1], sgm[:-1])
    _close([sigma_min], [normal[-2]])
    simple = REF[f"simple_{steps}"]
    ours = _sigmas("simple", s, steps)
    _close(ours[:-1], simple[:-1])
    assert ours[-1] == pytest.approx(sigma_min, rel=1e-14)
    ddim = REF[f"ddim_uniform_{steps}"]
    t = METHODS.create("ddim_uniform").bind(s, steps).timesteps()
    _close(s.sigma_ve(t).numpy()[:-1], ddim[:-1])  # starts below t_max, as ComfyUI's (index 1 + (N-1) c)
    assert t[-1] == s.t_min and len(t) == steps + 1


def test_ddim_uniform_with_a_count_comfyui_does_not_give_is_one_line_error():
    assert len(REF["ddim_uniform_7"]) == 9  # ComfyUI's 7-step ddim_uniform has 8 steps on K = 1000
    with pytest.raises(UserError, match="gives 8 steps"):
        METHODS.create("ddim_uniform").bind(VPScaledLinear(), 7).timesteps()


@pytest.mark.parametrize("name", ["normal", "sgm_uniform", "simple", "ddim_uniform"])
@pytest.mark.parametrize("schedule", [VE(), FlowOT(), VPLinear()])
def test_discrete_only_schedulers_refuse_continuous_models(name, schedule):
    with pytest.raises(UserError, match="discrete-time models") as err:
        METHODS.create(name).bind(schedule, 5).timesteps()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("steps", [3, 5, 10])
def test_linear_quadratic_is_comfyuis_on_the_models_time_range(steps):
    s = FlowOT()
    t = METHODS.create("linear_quadratic").bind(s, steps).timesteps().numpy()
    frac = (t - s.t_min) / (s.t_max - s.t_min)
    np.testing.assert_allclose(frac, REF[f"linear_quadratic_{steps}"], rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("steps", [3, 5, 10])
def test_align_your_steps_node_lists(steps):
    """manual + schedules/ays.json + interpolate: the node's sigmas but the last (0 there, sigma_min here)."""
    svd = _sigmas("manual", VE(0.002, 700.0), steps, path="schedules/ays.json", entry="SVD", interpolate=True)
    _close(svd[:-1], REF[f"ays_SVD_{steps}"][:-2] + ([] if steps == 0 else [REF[f"ays_SVD_{steps}"][-2]]))
    for entry in ("SD1", "SDXL"):
        ours = _sigmas("manual", VPScaledLinear(), steps, path="schedules/ays.json", entry=entry, interpolate=True)
        # The endpoint rule puts the model's exact sigma_max (14.614641229333...) in place of the list's
        # 10-digit 14.6146412293 before interpolating: a 2.3e-12 relative change of one end, carried
        # into the interpolated values with a weight <= 1.
        _close(ours[:-1], REF[f"ays_{entry}_{steps}"][:-2] + [REF[f"ays_{entry}_{steps}"][-2]], rtol=3e-12)


@pytest.mark.parametrize("steps", [3, 5, 10])
@pytest.mark.parametrize("entry, t_max", [("FLUX", 0.9968), ("Chroma", 0.992)])
def test_optimal_steps_node_lists_interpolated_in_t(entry, t_max, steps):
    s = FlowOT(t_min=0.001, t_max=t_max)
    t = METHODS.create("manual", path="schedules/optimal_steps.json", entry=entry, interpolate=True,
                       interpolate_in="list").bind(s, steps).timesteps().numpy()
    ref = REF[f"ost_{entry}_{steps}"]
    np.testing.assert_allclose(t[:-1], ref[:-1], rtol=RTOL, atol=0)
    assert ref[-1] == 0 and t[-1] == 0.001


def test_a_table_without_the_cells_steps_is_one_line_error(tmp_path):
    path = tmp_path / "table.json"
    path.write_text('{"T": {"kind": "sigmas", "steps": {"2": [80, 1, 0.002], "3": [80, 5, 0.5, 0.002]}}}')
    assert len(METHODS.create("manual", path=str(path)).bind(VE(), 2).timesteps()) == 3
    with pytest.raises(UserError, match="lists for 2, 3 steps but this cell runs 5"):
        METHODS.create("manual", path=str(path)).bind(VE(), 5).timesteps()
    t = METHODS.create("manual", path=str(path), interpolate=True).bind(VE(), 5).timesteps()
    assert len(t) == 6 and t[0] == 80 and t[-1] == 0.002
    with pytest.raises(UserError, match="OptimalSteps|the list has 11 values"):
        METHODS.create("manual", path="schedules/optimal_steps.json", entry="FLUX").bind(FlowOT(0.001, 0.9968), 5).timesteps()


# diffusers 0.42.1 (the harness's pinned version), run outside this repo in float64: the private
# `_convert_to_karras / _exponential / _beta / _lu` of DPMSolverMultistepScheduler (what `use_karras_sigmas`,
# `use_exponential_sigmas`, `use_beta_sigmas`, `use_lu_lambdas` call) on Stable Diffusion's scaled-linear
# table computed in float64 (diffusers' own table is float32), with num_inference_steps = N + 1; and
# FluxPipeline's `calculate_shift(seq_len, 256, 4096, 0.5, 1.15)` with FlowMatchEulerDiscreteScheduler's
# `time_shift(mu, 1.0, t)` (use_dynamic_shifting) at t = linspace(0.999, 0.001, 6).
DIFFUSERS = {
    'diffusers_version': '0.42.1',
    'karras_3': [14.614641229333643, 3.168603072959619, 0.44691820937343973, 0.02916715815172038],
    'exponential_3': [14.614641229333637, 1.8400239581355944, 0.2316641314271491, 0.029167158151720367],
    'beta_3': [14.614641229333639, 10.597607817837726, 4.046200569647634, 0.029167158151720367],
    'lu_3': [14.614641229333637, 1.8400239581355944, 0.2316641314271491, 0.02916715815172038],
    'karras_5': [14.614641229333643, 6.082149208471242, 2.232154544358539, 0.6925703768065329, 0.1697565757572342, 0.02916715815172038],
    'exponential_5': [14.614641229333637, 4.215114244752603, 1.2157115469009985, 0.3506321488458646, 0.10112835081452129, 0.029167158151720367],
    'beta_5': [14.614641229333639, 12.821769225239331, 9.324475333110637, 5.319333054374717, 1.8220391622460281, 0.029167158151720367],
    'lu_5': [14.614641229333637, 4.215114244752603, 1.2157115469009985, 0.3506321488458644, 0.10112835081452129, 0.02916715815172038],
    'karras_10': [14.614641229333643, 9.558262894383015, 6.082149208471242, 3.751253402037993, 2.232154544358539, 1.274100208978096, 0.6925703768065329, 0.3551823657501251, 0.1697565757572342, 0.07436283815469347, 0.02916715815172038],
    'exponential_10': [14.614641229333637, 7.848718521371048, 4.215114244752603, 2.2637056033973635, 1.2157115469009985, 0.6528916847890065, 0.3506321488458646, 0.18830520692570885, 0.10112835081452129, 0.054310464938442604, 0.029167158151720367],
    'beta_10': [14.614641229333639, 14.037283907995327, 12.821769225239331, 11.20139228709571, 9.324475333110637, 7.321904193742681, 5.319333054374717, 3.4424161003896483, 1.8220391622460281, 0.6065244794900319, 0.029167158151720367],
    'lu_10': [14.614641229333637, 7.848718521371048, 4.215114244752603, 2.263705603397363, 1.2157115469009985, 0.6528916847890065, 0.3506321488458644, 0.18830520692570885, 0.10112835081452129, 0.054310464938442604, 0.02916715815172038],
    'mu_1024': 0.63,
    'dynamic_shift_1024': [0.9994671591448085, 0.8821083145161279, 0.7378128895108395, 0.556104772518597, 0.3202662337886427, 0.001875964213224496],
    'mu_4096': 1.15,
    'dynamic_shift_4096': [0.9996831467047295, 0.926392328335326, 0.8255817075661495, 0.6781686070221977, 0.44212344725545744, 0.0031513915986858274],
}


@pytest.mark.parametrize("steps", [3, 5, 10])
@pytest.mark.parametrize("name, key", [("use_karras_sigmas", "karras"), ("use_exponential_sigmas", "exponential"),
                                       ("use_beta_sigmas", "beta"), ("use_lu_lambdas", "lu")])
def test_diffusers_sigma_options_on_stable_diffusions_table(name, key, steps):
    _close(_sigmas(name, VPScaledLinear(), steps), DIFFUSERS[f"{key}_{steps}"])


@pytest.mark.parametrize("seq", [1024, 4096])
def test_diffusers_dynamic_shift_is_the_flow_time_shift_with_mu_from_the_image_size(seq):
    from bench.models._diffusers_time import flow_shift

    config = {"use_dynamic_shifting": True, "base_image_seq_len": 256, "max_image_seq_len": 4096,
              "base_shift": 0.5, "max_shift": 1.15}
    shift = flow_shift(config, seq)
    assert math.log(shift) == pytest.approx(DIFFUSERS[f"mu_{seq}"], rel=1e-12)
    t = torch.linspace(0.999, 0.001, 6, dtype=torch.float64)
    np.testing.assert_allclose(FlowOT(0.001, 0.999, shift).sigma(t).numpy(), DIFFUSERS[f"dynamic_shift_{seq}"],
                               rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", ["simple", "normal", "karras", "laplace", "linear_quadratic", "beta_sigmas"])
def test_export_gives_the_new_schedules_the_same_forms(name, tmp_path):
    import json

    from bench.export import export_method

    path = export_method({"name": "digits", "time": "vp-scaled-linear"}, {"name": "euler"}, {"name": name}, [4],
                         tmp_path)[0]
    forms = json.loads(path.read_text())["forms"]
    assert set(forms) == {"diffusers", "k_diffusion", "comfyui"}
    # final_step t_min: the 5 knots, the last at sigma(t_min) > 0 (bench.export.stepping_list)
    assert forms["comfyui"]["sigmas"][-1] > 0 and len(forms["k_diffusion"]["sigmas"]) == 5
    if name == "simple":  # knots at training steps: diffusers' timesteps= form is exact
        assert forms["diffusers"]["DPMSolverMultistepScheduler"]["max_log_sigma_rounding"] == 0


# ComfyUI's GITSScheduler node (comfy_extras/nodes_gits.py, commit 3ce872336ae51035e0f40be91e815605e6860005),
# its execute() run outside this repo (denoise = 1): the table's list for N <= 20 steps, log-linear from the
# 20-step list beyond, last value set to 0.
GITS = {"0.85_3": [14.61464119, 7.49001646, 1.84880662, 0.0], "0.85_5": [14.61464119, 11.54541874, 7.11996698, 3.07277966, 1.24153244, 0.0], "0.85_20": [14.61464119, 13.76078796, 12.96784878, 12.2308979, 11.54541874, 10.90732002, 10.31284904, 9.75859547, 9.24142551, 8.75849152, 8.30717278, 7.88507891, 7.49001646, 6.77309084, 5.85520077, 4.65472794, 3.46139455, 2.45070267, 1.56271636, 0.72133851, 0.0], "0.85_25": [14.61464119, 13.927471349757571, 13.279388710757857, 12.667884611101742, 12.09062107581526, 11.545418739999999, 11.032054081570394, 10.546647200974983, 10.08746689450765, 9.652896411557185, 9.241425509999997, 8.853015906041552, 8.484840281360208, 8.135689468013995, 7.804433591696973, 7.490016459999999, 6.910764198571463, 6.20640103815489, 5.3417406155222675, 4.386980086075961, 3.4613945499999996, 2.6259274328941427, 1.8708731613149232, 1.147053680218664, 0.3797442664310359, 0.0], "1.20_3": [14.61464119, 1.56271636, 0.52423614, 0.0], "1.20_5": [14.61464119, 2.84484982, 1.24153244, 0.59516323, 0.25053367, 0.0], "1.20_20": [14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151, 1.24153244, 0.95350921, 0.74807048, 0.59516323, 0.50118381, 0.41087446, 0.34370604, 0.29807833, 0.25053367, 0.22545385, 0.19894916, 0.17026083, 0.13792117, 0.09824532, 0.0], "1.20_25": [14.61464119, 8.561381485204283, 5.630276071006637, 3.942295272121796, 2.8741216479628275, 2.19988537, 1.718474569079686, 1.3794513631355656, 1.117132791448308, 0.908339953756889, 0.7480704799999996, 0.623013384728673, 0.5368496283701436, 0.4628943485182656, 0.39646490516961197, 0.34370604, 0.30669151181616594, 0.26856648920135867, 0.24018325302978963, 0.2198844647724624, 0.19894916, 0.17564679064046618, 0.15004601236694481, 0.12042129914726284, 0.07706007509308942, 0.0]}


@pytest.mark.parametrize("key", sorted(GITS))
def test_gits_node_table(key):
    coeff, steps = key.split("_")
    steps = int(steps)
    s = VPScaledLinear()
    ours = _sigmas("manual", s, steps, path="schedules/gits.json", entry=f"coeff_{coeff}", interpolate=steps > 20)
    ref = GITS[key]
    # The endpoint rule puts the model's exact ends in place of the table's printed ones before resampling:
    # sigma_max 14.614641229333... for 14.61464119 (2.7e-9 relative), sigma_min 0.0291671581517... for
    # 0.02916753 (1.3e-5 relative). The interior knots of a listed step count are the table's values
    # (1e-12); resampled ones move with the ends, by at most the ends' change in log sigma.
    _close(ours[1:-1], ref[1:-1], rtol=RTOL if steps <= 20 else 1.3e-5)
    assert ref[-1] == 0 and ours[-1] == pytest.approx(0.029167158151720367, rel=1e-13)  # the model's sigma_min


def test_gits_table_beyond_its_steps_needs_interpolation():
    with pytest.raises(UserError, match="lists for 2, 3, 4.*20 steps but this cell runs 25"):
        METHODS.create("manual", path="schedules/gits.json", entry="coeff_1.20").bind(VPScaledLinear(), 25).timesteps()


@pytest.mark.parametrize("argv", [
    ["--model", "digits", "--method", "sgm_uniform", "--nfe", "4"],  # discrete-only on the VE digits model
    ["--model", "digits", "--model-param", "time=vp-scaled-linear", "--method", "manual", "--param",
     "path=schedules/gits.json", "--param", "entry=coeff_1.20", "--nfe", "25"],  # beyond the table
])
def test_bad_menu_inputs_are_one_line_errors_in_the_cli(argv, capsys):
    from bench.__main__ import main

    assert main(["show-schedule", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: method") and "\n" not in err and "Traceback" not in err
