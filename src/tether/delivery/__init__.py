"""Delivery: a finished run's branch pushed to a remote and, for `pull_request`, one pull or merge
request on the forge with the run's evidence. Below the runner, which delivers a run as it ends;
`tether deliver RUN` delivers one again."""
