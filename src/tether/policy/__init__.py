"""Policy as code: the tether.toml schema, its loading and code ownership."""

from tether.policy.load import POLICY_FILE, PolicyError, find_policy, load_policy, parse_policy
from tether.policy.schema import Policy

__all__ = ["POLICY_FILE", "Policy", "PolicyError", "find_policy", "load_policy", "parse_policy"]
