"""The searched schedules' shared machinery (GITS, OSS), one module a job.

Node convention everywhere: a timestep grid has nodes 0..T with t[0] = t_max (noise) and t[T] = t_min
(data), strictly decreasing; a student path of K steps is a node sequence 0 = n_0 < n_1 < ... < n_K = T.

* `timestep_grid`: the fine grid of times a search picks its nodes from;
* `teacher_path`: the teacher's states (and data predictions) at every node of the grid;
* `student_step`: one step of any solver of `bench.solvers` from a node to many candidate nodes,
  through the solvers' own `step` (OSS's candidate states, GITS's one-step jumps);
* `gits_dp`: GITS's dynamic program over a cost matrix and its trajectory deviation;
* `oss_dp`: OSS's dynamic program, the reference code's search and OSS-ave's median path.
"""
