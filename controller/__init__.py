"""Experiment domain: specs, designs, schedules, blackout windows, triggers and the Redis store."""
