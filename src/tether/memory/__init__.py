"""Memory: what agents learn about a repository, kept across its runs and reviewed by people."""
