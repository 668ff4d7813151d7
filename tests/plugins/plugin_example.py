"""A stand-in third-party plugin module, loaded through a faked `bench.methods` entry point."""
import torch

from bench.discretization import HeuristicMethod


def register(registry):
    @registry.register("example-plugin")
    class ExamplePlugin(HeuristicMethod):
        def timesteps(self):
            s = self.noise_schedule
            return torch.linspace(s.t_max, s.t_min, self.steps + 1, dtype=torch.float64)

    return ExamplePlugin
