"""How Tether looks in a terminal, one module per kind of view."""
