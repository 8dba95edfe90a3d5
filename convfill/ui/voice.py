"""Voice in the Chat tab: the mic panel (markup and browser code in `voice.js`), its token, and the socket route.

A visitor switching the mic on calls the panel's `voice_start` server function: the app checks who may chat
(like a typed turn), loads the voice models once per process, opens a `VoiceChannel` and returns its token.
The browser keeps the token in a hidden textbox that every chat call sends (`voice_token`), and connects its
WebSocket to `/convfill/voice` with it. Typed messages are spoken too while the mic is on.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr

from ..config import EngineConfig
from ..errors import ConvFillError
from ..identity import identity_of
from ..voice.protocol import PATH

log = logging.getLogger(__name__)

JS_FILE = Path(__file__).with_name("voice.js")
CSS_FILE = Path(__file__).with_name("voice.css")
_MARKUP = re.compile(r"/\*HTML\s*(.*?)\s*HTML\*/", re.S)


def _assets() -> tuple[str, str, str]:
    """(markup, script, css) of the mic panel; the markup is the `/*HTML ... HTML*/` comment in voice.js."""
    js = JS_FILE.read_text(encoding="utf-8") if JS_FILE.exists() else ""
    m = _MARKUP.search(js)
    css = CSS_FILE.read_text(encoding="utf-8") if CSS_FILE.exists() else ""
    return (m.group(1) if m else "<em>Voice is not available in this installation.</em>"), js, css


def same_origin(origin: str | None, host: str | None) -> bool:
    """A browser's socket must come from a page of this app: its Origin's host is the Host it connects to
    (so another site cannot open sockets in a visitor's name)."""
    if not origin or not host:
        return False
    try:
        return urlsplit(origin).netloc.lower() == host.lower()
    except ValueError:
        return False


def voice_route(service):
    """The Starlette WebSocket route serving every `VoiceChannel` of `service`."""
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def endpoint(ws: WebSocket) -> None:
        channel = service.get(ws.query_params.get("token"))
        if channel is None or channel.connected or not same_origin(ws.headers.get("origin"), ws.headers.get("host")):
            await ws.close(code=4403)
            return
        await ws.accept()
        await channel.serve(ws)

    return WebSocketRoute(PATH, endpoint)


def _option(options, key: str) -> str:
    """A text option from the browser (anything else counts as blank)."""
    value = options.get(key) if isinstance(options, dict) else None
    if not isinstance(value, str):
        return ""
    if len(value) > 300:
        raise ConvFillError(f"The {key} setting is too long.")
    return value.strip()


def build_voice_panel(ctx) -> dict:
    """The mic panel and its controls, inside the current Blocks; returns the components chat calls read."""
    markup, js, css = _assets()
    service = ctx.voice

    def voice_start(options, request: gr.Request = None) -> dict:
        """Open a voice channel for this visitor (runs on a worker thread: the first call loads the models).
        `options`: {"asr": spec, "tts": spec} from the panel, blank for the server's own models."""
        who = identity_of(request, None)
        try:
            ctx.policy.check_may_chat(who.name is not None)
            if service is None:
                raise ConvFillError("Voice is not available on this server.")
            asr, tts = (_option(options, k) for k in ("asr", "tts"))
            ctx.policy.check_model(asr, what="speech recognition model")  # public: only the operator's
            ctx.policy.check_model(tts, what="voice")
            asr_model, tts_model = service.models(asr, tts)
            channel = service.open(who.owner, asr_model, tts_model)
            return {"token": channel.token, "out_rate": getattr(tts_model, "sample_rate", service.out_rate)}
        except ConvFillError as e:
            return {"error": str(e)}
        except Exception as e:  # noqa: BLE001 - shown in the panel; the text chat keeps working
            log.exception("voice_start failed")
            return {"error": f"Voice could not start: {type(e).__name__}: {e}"}

    f = EngineConfig.__dataclass_fields__
    with gr.Accordion("Voice", open=True):
        panel = gr.HTML(value="", html_template=markup, js_on_load=js or None, css_template=css,
                        server_functions=[voice_start], elem_id="cf-voice", apply_default_css=True)
        with gr.Row():
            gr.Textbox("", label="Speech recognition model", elem_id="cf-asr", max_lines=1,
                             placeholder="blank: Whisper base, offline",
                             info="a CTranslate2 Whisper directory, a size or hub id (networked), or openai[:model]"
                                  + ("; only the operator's" if ctx.policy.public else ""))
            gr.Textbox("", label="Voice", elem_id="cf-tts", max_lines=1, placeholder="blank: Piper joe, offline",
                             info="a Piper .onnx voice, or openai[:model]; read when the mic is switched on")
        with gr.Row():
            pacing = gr.Radio(["audio", "text"], value=f["filler_pacing"].default, label="Filler pacing",
                              info=f["filler_pacing"].metadata["help"], elem_id="cf-filler-pacing")
            lead = gr.Number(f["filler_lead_s"].default, label="filler_lead_s", info=f["filler_lead_s"].metadata["help"],
                             minimum=f["filler_lead_s"].metadata["lo"], maximum=f["filler_lead_s"].metadata["hi"],
                             step=0.1, elem_id="cf-filler_lead_s")
    # Where the browser keeps its channel's token; rendered (so the page can set it) but never shown.
    token = gr.Textbox("", visible="hidden", elem_id="cf-voice-token", label="voice token", max_lines=1)
    return {"voice_panel": panel, "voice_token": token, "filler_pacing": pacing, "filler_lead_s": lead}
