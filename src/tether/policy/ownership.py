"""Who owns a path: the policy's protected patterns and, when enabled, the repository's CODEOWNERS."""

from __future__ import annotations

from dataclasses import dataclass, field

import codeowners
import pathspec

from tether.policy.patterns import compile_patterns
from tether.policy.schema import OwnershipPolicy

CODEOWNERS_LOCATIONS = ("CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")


@dataclass
class Ownership:
    """Resolved ownership rules. CODEOWNERS text comes from the base commit, never the worktree,
    so an agent cannot remove its own protection."""

    protected: list[tuple[pathspec.PathSpec, list[str]]] = field(default_factory=list)
    codeowners: codeowners.CodeOwners | None = None

    @classmethod
    def build(cls, policy: OwnershipPolicy, codeowners_text: str | None) -> Ownership:
        protected = [(compile_patterns([p]), owners) for p, owners in policy.protected.items()]
        parsed = codeowners.CodeOwners(codeowners_text) if policy.codeowners and codeowners_text else None
        return cls(protected=protected, codeowners=parsed)

    @property
    def has_owners(self) -> bool:
        return bool(self.protected) or self.codeowners is not None

    def owners_of(self, path: str) -> list[str]:
        """Owners whose approval a write to `path` needs; empty when the path is not protected."""
        owners: list[str] = []
        for spec, names in self.protected:
            if spec.match_file(path):
                owners.extend(names)
        if self.codeowners is not None:
            owners.extend(name for _kind, name in self.codeowners.of(path))
        return list(dict.fromkeys(owners))
