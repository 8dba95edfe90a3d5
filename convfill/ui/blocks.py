"""The app's `gr.Blocks`: Gradio's, with its browser-side run history off unless a caller insists.

Gradio 6 records every input of every call, the API key box included, in the browser's localStorage
("gradio:run-history:..."), where it outlives the tab. `launch()` reads `run_history` (default: the
`GRADIO_RUN_HISTORY` variable, else on), so the default is changed here, once, for every way the app is
launched: `python app.py`, a Space, the tests. The voice socket's route is added the same way.
"""

from __future__ import annotations

import gradio as gr


class StudioBlocks(gr.Blocks):
    """`routes`: extra Starlette routes served by the app's own server (the voice WebSocket)."""

    routes: list = []

    def launch(self, *args, run_history: bool = False, app_kwargs: dict | None = None, **kwargs):
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["routes"] = [*app_kwargs.get("routes", []), *self.routes]
        return super().launch(*args, run_history=run_history, app_kwargs=app_kwargs, **kwargs)
