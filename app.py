"""ConvFill Studio web app (Gradio). Placeholder until the app issue lands: `python app.py`."""

import gradio as gr


def build_app():
    with gr.Blocks(title="ConvFill Studio") as demo:
        gr.Markdown("# ConvFill Studio\nThe chat and labeling tabs are being built.")
    return demo


demo = build_app()

if __name__ == "__main__":
    demo.launch()
