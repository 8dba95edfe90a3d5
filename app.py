"""ConvFill Studio: `python app.py` (also the Hugging Face Space entry point, see README front matter).

Thin on purpose: the app is built by `convfill.ui.build_app`. Environment: `CONVFILL_DB` / `CONVFILL_HOME`
(where turns are stored), `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` / `GEMINI_API_KEY` (Space secrets),
`GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` (read by Gradio itself).
"""

from convfill.ui import AppConfig, build_app

demo = build_app(AppConfig.from_env(preload_talker=True))

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=None).launch()
