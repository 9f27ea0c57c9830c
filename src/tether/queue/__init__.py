"""Durable submission and workers: DBOS workflows, fleet limits enforced in the store."""
