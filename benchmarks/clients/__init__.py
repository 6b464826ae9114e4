"""Single-process baselines, each a script as a user would write it, run in its own process."""
