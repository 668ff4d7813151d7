"""Per-instance schedules out: INDIS's and GOD's fitted schedule network, exported as TorchScript by
`bench.export.export_network`, loads without the harness's classes and returns the method's own
`discretize(x_T, cond)` exactly (the README's loader is `torch.jit.load`)."""
import pytest
import torch

from bench.export import export_network
from bench.models import make_model
from bench.registry import METHODS
from bench.solvers import make_solver
from bench.teacher import TeacherSet
from tests.helpers import fitted_method

TINY = {"iterations": 6, "val": 16, "val_every": 3, "batch": 8, "train": 32, "loss": "l2"}


def _fitted(name, model, steps=3, **params):
    solver = make_solver("euler")
    teacher_method = METHODS.create("uniform").bind(model.schedule, 20, solver)
    gen = torch.Generator().manual_seed(1)

    def teacher(split, n):
        x_T = model.prior(torch.randn((n,) + tuple(model.data_shape), generator=gen)).double()
        cond = None if not model.num_classes else torch.arange(n) % model.num_classes
        with torch.no_grad():
            x0 = solver.sample(model, x_T, teacher_method.discretize(x_T), cond)
        return TeacherSet(list(range(n)), x_T, cond, x0)

    return fitted_method({"name": name, **params}, model, solver, teacher, steps=steps, nfe=steps, train_size=32)[0]


@pytest.mark.parametrize("name,model_spec,params", [
    ("indis", {"name": "toy2d", "time": "flow"}, {}),
    ("indis", {"name": "digits"}, {}),              # SVD features and class labels
    ("indis", {"name": "toy2d", "time": "flow"}, {"shifts": False}),
    ("god", {"name": "toy2d", "time": "flow"}, {}),
])
def test_exported_network_gives_the_methods_schedule_back(tmp_path, name, model_spec, params):
    model = make_model(model_spec)
    method = _fitted(name, model, **TINY, **params)
    path = export_network(method, tmp_path / "net.pt")
    net = torch.jit.load(str(path))
    n = 7  # not the traced batch size
    x_T = model.prior(torch.randn((n,) + tuple(model.data_shape), generator=torch.Generator().manual_seed(9))).double()
    labels = torch.arange(n) % model.num_classes if model.num_classes else None
    disc = method.discretize(x_T, labels)
    t, t_eval, scale = net(x_T, labels if labels is not None else torch.full((n,), -1, dtype=torch.long))
    assert torch.equal(t, disc.t)
    if params.get("shifts", True):
        assert torch.equal(t_eval, disc.t_eval) and torch.equal(scale, disc.scale)
    else:
        assert disc.t_eval is None and torch.equal(t_eval, disc.t[:, :-1]) and bool((scale == 1).all())
    if name == "indis":
        assert t.shape[0] == n and not torch.equal(t[0], t[1])
    else:
        assert t.shape[0] == 1


def test_a_method_without_a_network_says_so(tmp_path):
    from bench.errors import UserError

    method = METHODS.create("edm").bind(make_model("digits").schedule, 3)
    with pytest.raises(UserError, match="no schedule network"):
        export_network(method, tmp_path / "x.pt")
