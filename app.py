"""ConvFill Studio web app (Gradio). Placeholder until the app issue lands: `python app.py`."""

import gradio as gr

from labeling.store import LabelStore
from labeling.ui import build_labeling_tab


def build_app(store: LabelStore | None = None):
    store = store or LabelStore()
    with gr.Blocks(title="ConvFill Studio") as demo:
        gr.Markdown("# ConvFill Studio")
        with gr.Tab("Chat"):
            gr.Markdown("The chat tab is being built.")
        with gr.Tab("Labeling"):
            build_labeling_tab(store)
    return demo


demo = build_app()

if __name__ == "__main__":
    demo.launch()
