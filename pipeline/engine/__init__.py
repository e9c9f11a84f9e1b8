"""Training machinery: schedules, mixed precision, checkpoints, tracking, distributed, loops."""
