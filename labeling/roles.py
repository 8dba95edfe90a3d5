"""What a visitor may do with the workbench.

Who they are comes from `convfill.identity` (the Space's "Sign in with Hugging Face" account, Gradio's own
login, or an anonymous browser session). Locally (public mode off) the typed annotator name is trusted as
before and everyone may do everything.

In public mode the operator grants roles by environment:

* `CONVFILL_ADMINS` (comma-separated user names): see every conversation, export, score;
* `CONVFILL_ANNOTATORS` (names, or `*` = anyone signed in; default: nobody): see and label every
  conversation's phrases, always under their own name (`*` therefore shows every conversation to anyone
  with an account: only for workbenches whose chats are not private);
* everybody else sees only the conversations of their own session or account and cannot label, score or
  export.

Conversations carry their owner (`meta.owner`: the account, or `session:<id>` for an anonymous visitor),
which is how "their own" is decided.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from convfill.identity import Identity, identity_of

__all__ = ["Identity", "Roles", "identity_of"]

ADMINS_ENV, ANNOTATORS_ENV = "CONVFILL_ADMINS", "CONVFILL_ANNOTATORS"


def _names(var: str, default: str = "") -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(var, default).split(",") if n.strip())


@dataclass(frozen=True)
class Roles:
    """What each identity may do; `public=False` allows everything (local use)."""

    public: bool = False
    admins: frozenset[str] = frozenset()
    annotators: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, public: bool) -> "Roles":
        return cls(public, _names(ADMINS_ENV), _names(ANNOTATORS_ENV))

    def is_admin(self, who: Identity) -> bool:
        return not self.public or who.name in self.admins

    def can_label(self, who: Identity) -> bool:
        if not self.public:
            return True
        return who.name is not None and (who.name in self.admins or "*" in self.annotators
                                         or who.name in self.annotators)

    def sees_all(self, who: Identity) -> bool:
        return self.is_admin(who) or self.can_label(who)

    def annotator_name(self, who: Identity, typed: str | None) -> str | None:
        """The name labels are written under: the account in public mode (a typed name is ignored there),
        the typed name locally."""
        if self.public:
            return who.name
        return (typed or "").strip() or None
