"""The model gateway: external agents' model traffic through Tether's budgets and event log."""
