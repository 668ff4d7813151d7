"""`bench`: a harness that compares timestep-discretization methods for few-step diffusion sampling.

The vocabulary (noise schedule, denoiser, discretization, solver, method, teacher set, cell) follows
`shared/DESIGN.md`; each submodule's docstring says which paper or library it follows.
"""

__version__ = "0.1.0"

# The Python API (`bench.api`), imported on first use so that `import bench` stays cheap.
_API = ("PluginSpec", "bind", "fit", "cell", "fitted", "first_prior", "discretize", "sample", "run", "results")


def __getattr__(name):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
