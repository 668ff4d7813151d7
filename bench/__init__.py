"""`bench`: a harness that compares timestep-discretization methods for few-step diffusion sampling.

The vocabulary (noise schedule, denoiser, discretization, solver, method, teacher set, cell) follows
`shared/DESIGN.md`; each submodule's docstring says which paper or library it follows.
"""

__version__ = "0.1.0"
