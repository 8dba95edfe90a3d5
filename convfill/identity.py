"""Who is behind a Gradio event: the one rule, used by the chat (whose conversation) and the workbench
(what they may see and do, `labeling.roles`).

Strongest first: the Hugging Face account of a visitor signed in with the Space's "Sign in with Hugging
Face" button (Gradio's OAuth profile), else the user of Gradio's own `auth=` login, else nobody: the
anonymous browser session. Takes the objects Gradio injects (`gr.Request`, `gr.OAuthProfile`) without
importing Gradio.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """Parameters:
        name: the account name (None when anonymous).
        owner: what this visitor's conversations are stored under.
    """

    name: str | None
    owner: str


def identity_of(request=None, profile=None) -> Identity:
    """The visitor behind a Gradio event: OAuth profile, else Gradio login, else the browser session."""
    name = None
    if profile is not None:
        name = getattr(profile, "username", None) or (profile.get("preferred_username") if hasattr(profile, "get")
                                                      else None)
    name = name or getattr(request, "username", None)
    if name:
        return Identity(str(name), f"user:{name}")
    session = getattr(request, "session_hash", None)
    # A call without a browser session (a bare HTTP POST) gets an owner of its own, never a shared one.
    return Identity(None, f"session:{session}" if session else f"call:{uuid.uuid4().hex}")
