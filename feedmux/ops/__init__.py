"""Operating a run: the CLI, configuration, the supervisor and its children, status, metrics."""
