"""The run: the driver (plan, study, Ray Tune, progress, summary) and what one trial runs on a worker."""
