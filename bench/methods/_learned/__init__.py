"""The parts the learned schedules (`ld3`, `ld3-hard`, `indis`, `god`, `oracle`) share, one job per module.

* `time_map`: the cumulative-softmax map from logits to timesteps and the decoupled evaluation times;
* `init`: the closed-form heuristics a fit starts from and the choice among them;
* `losses`: the training / validation losses and the shared `auto` parameters;
* `batches`: seeded epochs of training batches, per-sample losses over a split;
* `training`: the training skeleton (`LearnedFit`) every learned fit runs;
* `prior_net`: INDIS's schedule network, GOD's global output, and the map from their output to a
  discretization;
* `export`: a fitted schedule network as a TorchScript module (built on that same map).

Not a plugin package: the leading underscore keeps the registry from importing it.
"""
