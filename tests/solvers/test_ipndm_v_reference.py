"""`ipndm-v` with `variant: diff-sampler` (the default) against the reference code's own numbers.

Expected values come from running zju-pi/diff-sampler's `ipndm_v_sampler` outside this repository
(repo github.com/zju-pi/diff-sampler, commit 68d5ce427f261962b89ce3b0ee8f6b29f0577328, file
`diff-solvers-main/solvers.py` with its `solver_utils.py`), torch 2.14.1, float64:

    cp diff-solvers-main/solvers.py diff-solvers-main/solver_utils.py /tmp/ds && cd /tmp/ds
    python run_ipndm_v.py   # ipndm_v_sampler(net, X_T / sigmas[0], t_steps=sigmas, max_order, afs)

where `net(x, t)` is the exact denoiser of the isotropic Gaussian mixture `MIXTURE` below (VE noise
level t), and the weights are read off a run with a net whose d_cur at step i is the unit vector
e_i (denoised = x - t e_i), so that (x_{i+1} - x_i) / (t_{i+1} - t_i) is the weight vector.
Only the values are kept here.
"""
from __future__ import annotations

import pytest
import torch

from bench.discretization import Discretization
from bench.schedules import VE
from bench.solvers import make_solver
from bench.solvers.ipndm_v import diff_sampler_weights, exact_weights

F64 = torch.float64
MIXTURE = {"means": [[1.0, 0.5], [-0.8, 0.2], [0.1, -1.0]], "stds": [0.3, 0.5, 0.4], "weights": [0.5, 0.3, 0.2]}
X_T = [[12.0, -30.0], [-55.0, 7.5], [80.0, 41.0], [-3.0, -64.0]]


class Mixture:
    schedule = VE()

    def __init__(self):
        self.means, self.stds = torch.tensor(MIXTURE["means"], dtype=F64), torch.tensor(MIXTURE["stds"], dtype=F64)
        self.log_weights = torch.log(torch.tensor(MIXTURE["weights"], dtype=F64))

    def __call__(self, x, t, cond=None):
        var = self.stds**2 + t.reshape(-1, 1) ** 2
        y = x[:, None, :]
        logp = self.log_weights - x.shape[-1] / 2 * torch.log(var) - ((y - self.means) ** 2).sum(-1) / (2 * var)
        r = torch.softmax(logp, dim=-1)[..., None]
        return (r * (self.means + (self.stds**2 / var)[..., None] * (y - self.means))).sum(1)


def edm(n, rho=7.0):
    u = torch.linspace(0, 1, n + 1, dtype=F64)
    return (80 ** (1 / rho) + u * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho


SIGMAS = {"edm6": edm(6), "uniform5": torch.linspace(80, 0.002, 6, dtype=F64)}
SAMPLES = {
    ("edm6", 4, False): [[0.640864108587939, 0.06318923462275833], [-0.45147782537753883, 0.13635392996556595],
                         [1.20686549441853, 0.6052055942720825], [0.18790602451467295, -0.5882571832686018]],
    ("edm6", 4, True): [[0.644292482119859, 0.0671968878733383], [-0.44789648855220815, 0.13687458008400744],
                        [1.2034185200571728, 0.6039034248624114], [0.19047399021959038, -0.5848851187835282]],
    ("edm6", 3, False): [[0.639161762148429, 0.06304118909196707], [-0.4473525116110521, 0.1363315207930196],
                         [1.2045294668260385, 0.6038616308860105], [0.1887559578649257, -0.5844750380555983]],
    ("edm6", 3, True): [[0.6420530266448556, 0.06658486369545875], [-0.44436848394198725, 0.13671821218773644],
                        [1.2011435226280693, 0.602579013464339], [0.19086500421864772, -0.581523944622059]],
    ("uniform5", 4, False): [[0.28683826695696046, 0.09499847441499121], [0.23104148929420631, 0.10529894293615039],
                             [0.36136937047157147, 0.14851730720139322], [0.2669621721877332, 0.07196609829833989]],
    ("uniform5", 4, True): [[0.152385557528961, 0.04196335729992118], [0.09752523279926884, 0.053081295638423676],
                            [0.2247452016284086, 0.09483019583720953], [0.13319729468825015, 0.019049272559504615]],
    ("uniform5", 3, False): [[0.2862303314179049, 0.09615743253710374], [0.2349541333819687, 0.10566844913604001],
                             [0.3547547159107154, 0.14537701340145937], [0.2679745905438128, 0.07499343012725745]],
    ("uniform5", 3, True): [[0.25681378185206905, 0.08455265565034953], [0.20574099615538266, 0.09424325852824444],
                            [0.3248641969389645, 0.13362993759088404], [0.23870845627069281, 0.06341433429083487]],
}
# (sigmas, step i) -> the reference's weights of eps_i, eps_{i-1}, ... at step i
WEIGHTS = {
    ("uniform5", 1): [1.5, -0.5],
    ("uniform5", 2): [1.9166666666666665, -1.3333333333333333, 0.4166666666666668],
    ("uniform5", 3): [2.375000000000001, -2.708333333333334, 1.7916666666666667, -0.45833333333333326],
    ("uniform5", 4): [2.375, -2.708333333333334, 1.7916666666666676, -0.45833333333333404],
    ("edm5", 1): [1.167016012404947, -0.16701601240494676],
    ("edm5", 2): [1.628350315603214, -0.7944061524417582, 0.166055836838544],
    ("edm5", 3): [1.5957371841372654, -0.7289278355529053, 0.13337217337967172, -0.0001426221725256297],
    ("edm5", 4): [1.5488140779340522, -0.6395067518357668, 0.09071420323821533, -1.4817888853794088e-05],
}


@pytest.mark.parametrize("key", list(SAMPLES), ids=lambda k: f"{k[0]}-order{k[1]}-{'afs' if k[2] else 'plain'}")
def test_samples_match_diff_sampler(key):
    sigmas, max_order, afs = key
    solver = make_solver({"name": "ipndm-v", "max_order": max_order, "afs": afs})
    out = solver.sample(Mixture(), torch.tensor(X_T, dtype=F64), Discretization(SIGMAS[sigmas][None]))
    torch.testing.assert_close(out, torch.tensor(SAMPLES[key], dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("key", list(WEIGHTS), ids=lambda k: f"{k[0]}-step{k[1]}")
def test_weights_match_diff_sampler(key):
    sigmas, i = key
    s = torch.linspace(80, 0.002, 6, dtype=F64) if sigmas == "uniform5" else edm(5)
    nodes = [s[i + 1 - j : i + 2 - j] for j in range(len(WEIGHTS[key]) + 1)]  # s_{i+1}, s_i, s_{i-1}, ...
    torch.testing.assert_close(diff_sampler_weights(nodes)[0], torch.tensor(WEIGHTS[key], dtype=F64),
                               rtol=0, atol=1e-12)


def test_uniform_weights_of_both_variants():
    """On equal steps: diff-sampler's order-4 weights are [57, -65, 43, -11] / 24, the exact ones
    Adams-Bashforth's [55, -59, 37, -9] / 24."""
    nodes = [torch.tensor([5.0 - j], dtype=F64) for j in range(5)]
    torch.testing.assert_close(diff_sampler_weights(nodes)[0], torch.tensor([57, -65, 43, -11], dtype=F64) / 24)
    torch.testing.assert_close(exact_weights(nodes)[0], torch.tensor([55, -59, 37, -9], dtype=F64) / 24)
