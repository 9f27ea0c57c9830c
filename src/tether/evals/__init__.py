"""Evals: suites of tasks, matrix runs of tasks x configs x repeats through the normal runner and
queue, scoring with hidden checks, metrics read from the runs' events, statistics and reports."""
