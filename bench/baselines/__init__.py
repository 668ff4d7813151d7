"""Closed-form, training-free timestep schedules (one plugin per module)."""
