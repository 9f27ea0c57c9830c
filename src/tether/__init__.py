"""Tether: a control plane for coding agents. docs/architecture.md maps the modules and their arrows."""
