"""Worktrees, snapshots, diffs and sandboxed execution."""
