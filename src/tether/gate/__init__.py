"""Permission tiers earned and lost on measured SLAs: measure a (repository, configuration), decide, record."""
