"""Agent architectures and their tools."""
