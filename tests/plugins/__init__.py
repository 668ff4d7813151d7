"""Fixture plugins for the tests: modules that register test methods and solvers, or serve as
exhaustive references, importable by module name (`tests.plugins.<module>`) by workers and jobs."""
