"""What became of delivered changes, read from the repository's own history."""
