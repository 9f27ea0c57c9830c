"""The policy enforcement point: budgets, scopes, write caps, approvals, brakes."""
