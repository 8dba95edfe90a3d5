"""ConvFill Studio: `python app.py` (also the Hugging Face Space entry point, see README front matter).

The app is assembled here, at the top, and nowhere below: the store (`labeling.store.LabelStore`, the core
turn log plus labels), its one writer thread, the live judge, the Chat tab shell (`convfill.ui`) and the
Labeling tab (`labeling.ui`). Lower packages never import this file or each other upwards (`tests/test_layers.py`).

Environment: `CONVFILL_DB` / `CONVFILL_HOME` (where turns are stored), `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` /
`GEMINI_API_KEY` (Space secrets), `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` (read by Gradio itself).
"""

from __future__ import annotations

import argparse
import os
import sys

from convfill.ui import AppConfig, ExtraTab, ModelPool, build_studio
from convfill.turnlog import StoreWriter
from labeling.live import LiveJudge
from labeling.roles import Roles
from labeling.store import LabelStore
from labeling.ui import build_labeling_tab


def build_app(config: AppConfig | None = None, pool: ModelPool | None = None):
    """The Gradio Blocks of ConvFill Studio (not launched).

    Args:
        config: app settings (default: `AppConfig.from_env()`).
        pool: shared loaded models (tests may pass one with a preloaded Talker).
    """
    config = config or AppConfig.from_env()
    store = LabelStore(config.db)
    judge = LiveJudge(store) if config.live_judge else None
    roles = Roles.from_env(config.policy.public)

    def labeling_tab(tab) -> None:
        import gradio as gr

        # Only on a Space with hf_oauth: true. Elsewhere Gradio mocks the OAuth routes with the server's own
        # token, which would sign every visitor in as its owner.
        if config.policy.public and os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"):
            gr.LoginButton()
        extra = {"judge_loader": judge.load} if judge is not None else {}  # one judge in memory, shared
        build_labeling_tab(store, tab=tab, roles=roles, **extra)

    return build_studio(config, store=store, writer=StoreWriter(store), judge=judge, pool=pool,
                        tabs=[ExtraTab("Labeling", "labeling", labeling_tab)])


_demo = None


def __getattr__(name: str):
    """`app.demo`: the app built on first access (Spaces and `gradio app.py` look for it; importing
    `build_app` from here builds nothing)."""
    global _demo
    if name != "demo":
        raise AttributeError(name)
    if _demo is None:
        _demo = build_app(AppConfig.from_env(preload_talker=True))
    return _demo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python app.py", description="Launch ConvFill Studio (Chat + Labeling).")
    p.add_argument("--host", default=None, help="default: GRADIO_SERVER_NAME or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: GRADIO_SERVER_PORT or 7860")
    args = p.parse_args(argv)
    __getattr__("demo").queue(default_concurrency_limit=None).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
