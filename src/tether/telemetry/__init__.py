"""Telemetry: a run's event log projected onto OpenTelemetry spans and metrics (the GenAI semantic
conventions), exported live as the events are written or afterwards from the store."""
