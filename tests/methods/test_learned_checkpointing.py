"""Gradient checkpointing of the learned methods: same gradients, same fits, and the `auto` rule."""
from __future__ import annotations

import pytest
import torch

from bench.discretization import Discretization
from bench.errors import UserError
from bench.models import make_model
from bench.registry import METHODS
from bench.schedules import VE
from bench.solvers import make_solver
from bench.methods._checkpointing import Checkpointed, checkpointed
from bench.methods._learned.time_map import TimeMap


class TinyNet(torch.nn.Module):
    """A small conv denoiser in EDM's VE preconditioning, with dropout to check RNG replay."""

    schedule = VE()
    data_shape = (2, 6, 6)
    num_classes = 0

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(),
                                        torch.nn.Dropout(0.2), torch.nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, x, t, cond=None):
        s = t.reshape(-1, 1, 1, 1).to(x.dtype)
        c_in = 1 / (s * s + 0.25).sqrt()
        h = torch.cat([x * c_in, s.log().expand(-1, 1, *x.shape[2:]) / 4], dim=1)
        return 0.25 / (s * s + 0.25) * x + s * 0.5 * c_in * self.body(h)


@pytest.mark.parametrize("solver", ["ipndm", "heun", "unipc-bh2"])
def test_checkpointed_gradients_equal_plain_ones(solver):
    net = TinyNet().double().train()  # dropout on: the recomputation must replay the same masks
    solver = make_solver(solver)
    tmap = TimeMap(net.schedule)
    x_T = 80 * torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x0 = torch.randn(3, 2, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for model in (net, Checkpointed(net)):
        logits = torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=torch.float64, requires_grad=True)
        z = x_T.clone().requires_grad_(True)
        net.zero_grad()
        torch.manual_seed(3)
        out = solver.sample(model, z, Discretization(tmap.times(logits)))
        (out - x0).square().mean().backward()
        grads.append([logits.grad.clone(), z.grad.clone()] + [p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-12)


def test_auto_rule_and_user_errors():
    digits = make_model("digits")
    assert checkpointed(digits, "auto") is digits  # exact, parameter-free: nothing to recompute
    assert isinstance(checkpointed(TinyNet(), "auto"), Checkpointed)
    assert isinstance(checkpointed(digits, True), Checkpointed)
    assert checkpointed(TinyNet(), False).__class__ is TinyNet
    wrapped = Checkpointed(digits)
    assert wrapped.data_shape == digits.data_shape and wrapped.schedule is digits.schedule
    with torch.no_grad():  # no autograd: plain call
        x, t = torch.randn(2, 1, 8, 8), torch.full((2,), 3.0)
        assert torch.equal(wrapped(x, t), digits(x, t))
    for name in ("ld3", "indis", "god", "oracle"):
        with pytest.raises(UserError, match="grad_checkpointing"):
            METHODS.create(name, grad_checkpointing="yes")


def test_ld3_fit_is_the_same_with_checkpointing():
    from bench.discretization import FitContext
    from bench.teacher import TeacherSet

    net = TinyNet().eval()
    solver, steps = make_solver("euler"), 3
    teacher_method = METHODS.create("edm").bind(net.schedule, 12, solver)
    sets = {}
    for split, seed in (("train", 1), ("val", 2)):
        x_T = 80 * torch.randn(4, 2, 6, 6, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            x0 = solver.sample(net, x_T, teacher_method.discretize(x_T))
        sets[split] = TeacherSet(list(range(4)), x_T, None, x0)
    infos, xis = [], []
    for mode in (False, True):
        method = METHODS.create("ld3", grad_checkpointing=mode, train=4, val=4, batch=2, rounds1=1, rounds2=1,
                                loss="l2").bind(net.schedule, steps, solver, model=net)
        method.fit(FitContext(model=net, schedule=net.schedule, solver=solver, nfe=steps, steps=steps,
                              teacher=lambda split, n: sets[split], generator=torch.Generator().manual_seed(0)))
        info = method.fit_info()
        assert info["best_val_loss"] < min(info["init_val_losses"].values())  # the fit moved
        infos.append(info["best_val_loss"])
        xis.append(method.xi)
    assert infos[0] == pytest.approx(infos[1], rel=1e-5)
    assert torch.allclose(xis[0], xis[1], rtol=1e-5, atol=1e-6)
