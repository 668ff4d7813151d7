"""Searched and learned timestep schedules (one plugin per module)."""
