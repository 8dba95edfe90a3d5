/*HTML
<div class="cf-voice">
  <button id="cf-mic" type="button" aria-pressed="false">🎤 Voice off</button>
  <select id="cf-voice-mode" aria-label="Voice mode">
    <option value="vad">Hands-free</option>
    <option value="ptt">Push to talk</option>
  </select>
  <button id="cf-ptt" type="button" disabled title="Hold to talk (or hold Space)">Hold to talk</button>
  <span id="cf-voice-status" role="status" aria-live="polite">Voice is off</span>
</div>
HTML*/
// Voice for the Chat tab: the Gradio gr.HTML `js_on_load` (runs with `element` and `server`).
// Mic -> VAD -> int16 frames over the voice WebSocket; server audio -> scheduled AudioBuffers; barge-in.
// The wire protocol is convfill/voice/protocol.py. No libraries; nothing leaves the app's own origin.
(() => {
  const $ = (sel) => element.querySelector(sel);
  const micBtn = $("#cf-mic"), modeSel = $("#cf-voice-mode"), pttBtn = $("#cf-ptt"), statusEl = $("#cf-voice-status");
  const RATE = 16000, FRAME = 320;            // 20 ms capture frames at the server's input rate
  const PREROLL = 15;                          // frames (300 ms) sent ahead of the detected start
  const START_FRAMES = 3;                      // 60 ms above threshold opens an utterance: barge-in must be quick
  const MIN_SPEECH_MS = 250, PAUSE_MS = 200, ENDPOINT_MS = 600;
  const ABS_THRESH = 0.012, FLOOR_K = 3.0, ECHO_K = 2.5; // RMS; ECHO_K raises it while we are playing (echo)
  // Capture worklet: 20 ms frames at 16 kHz, each stamped with its end in context time. Linear resampling
  // covers a context that could not run at 16 kHz (Firefox wants the mic's own rate); at 16 kHz it copies.
  // Barge-in is decided here too, on the audio thread: while the reply plays, START_FRAMES loud frames mute
  // the gate every reply source goes through at once (one 8 ms render later), however busy the page is;
  // the page then stops the sources, reports the cut and unmutes. Capture and gate share one context, so
  // they share this module's `cf` state.
  const WORKLET = `const cf = { playing: false, thresh: 1, muted: false, loud: 0, onset: 0 };
  class CfCapture extends AudioWorkletProcessor {
    constructor() {
      super(); this.buf = new Float32Array(${FRAME}); this.n = 0; this.t = 0; this.prev = 0; this.step = sampleRate / ${RATE};
      this.port.onmessage = (e) => { Object.assign(cf, e.data); if (!cf.playing) cf.loud = 0; };
    }
    frame(end) {
      this.port.postMessage([this.buf.slice(), end]);
      if (!cf.playing || cf.muted) return;
      let s = 0; for (let i = 0; i < ${FRAME}; i++) s += this.buf[i] * this.buf[i];
      if (Math.sqrt(s / ${FRAME}) <= cf.thresh) { cf.loud = 0; return; }
      if (++cf.loud === 1) cf.onset = end;
      if (cf.loud >= ${START_FRAMES}) { cf.muted = true; this.port.postMessage({ mute: currentTime, onset: cf.onset }); }
    }
    process(inputs) {
      const ch = inputs[0] && inputs[0][0];
      if (ch) for (let i = 0; i < ch.length; i++) {
        for (; this.t < 1; this.t += this.step) {
          this.buf[this.n++] = this.prev + (ch[i] - this.prev) * this.t;
          if (this.n === ${FRAME}) { this.frame(currentTime + (i + 1) / sampleRate); this.n = 0; }
        }
        this.t -= 1; this.prev = ch[i];
      }
      return true;
    }
  }
  class CfGate extends AudioWorkletProcessor {
    process(inputs, outputs) {
      const i = inputs[0] && inputs[0][0], o = outputs[0] && outputs[0][0];
      if (i && o && !cf.muted) o.set(i);
      return true;
    }
  }
  registerProcessor("cf-capture", CfCapture);
  registerProcessor("cf-gate", CfGate);`;

  // Live stats for tests and debugging (read by tests/test_voice_browser.py).
  const stats = { state: "off", playedSamples: 0, playedMs: 0, chunks: [], transcripts: [], lastTurn: null,
                  eosToFirstAudioMs: [], bargeIns: [], errors: [], log: [] };
  if (window.convfillVoice && window.convfillVoice.off) window.convfillVoice.off(); // js_on_load ran again
  window.convfillVoice = stats;

  let v = null; // the live session: socket, contexts, stream; null when voice is off

  const note = (what) => { stats.log.push([Math.round(performance.now()), what]); if (stats.log.length > 500) stats.log.shift(); };
  const setStatus = (text) => { statusEl.textContent = text; };
  const fail = (text) => { stats.errors.push(text); setStatus(text); };
  const send = (obj) => { if (v && v.ws && v.ws.readyState === 1) v.ws.send(JSON.stringify(obj)); };
  const sendPcm = (f) => { if (v.ws && v.ws.readyState === 1) v.ws.send(toPcm16(f)); };
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));

  function setToken(token) { // the hidden textbox tells the chat turn to speak (and to which socket)
    const box = document.querySelector("#cf-voice-token textarea, #cf-voice-token input");
    if (!box) { if (token) fail("voice: #cf-voice-token is missing from the page"); return; }
    box.value = token;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function updateState() {
    if (!v) stats.state = "off";
    else if (!v.ready) stats.state = "starting";
    else if (v.utt) stats.state = "speaking";
    else if (v.live.length) stats.state = "playing";
    else stats.state = "listening";
  }

  const newContext = (rate) => { try { return new AudioContext({ sampleRate: rate }); } catch (e) { return new AudioContext(); } };

  // ------------------------------------------------------------------------------- toggle on / off
  async function start() {
    const mode = modeSel.value;
    // Contexts are made inside the click, so autoplay rules let them run.
    v = { mode, ready: false, utt: null, ring: [], loud: 0, floor: 0, onset: 0, live: [], lastEnd: 0,
          turn: null, active: null, eosAt: null, firstSent: new Set(), maxUttMs: 60000,
          inCtx: newContext(RATE), outCtx: null };
    const me = v;
    micBtn.textContent = "🎤 Voice on"; micBtn.setAttribute("aria-pressed", "true");
    setStatus("Starting voice…"); updateState();
    try {
      const field = (id) => (document.querySelector(`#${id} textarea, #${id} input`) || {}).value || "";
      const res = await server.voice_start({ mode, asr: field("cf-asr"), tts: field("cf-tts") });
      if (!res || res.error || !res.token) throw new Error((res && res.error) || "voice is not available");
      if (v !== me) return;
      const base = location.pathname.replace(/\/$/, "");
      const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${base}/convfill/voice` +
                  `?token=${encodeURIComponent(res.token)}`;
      me.ws = new WebSocket(url);
      me.ws.binaryType = "arraybuffer";
      me.ws.onmessage = (e) => { if (v === me) onMessage(e.data); };
      me.ws.onclose = () => { if (v === me) { stop(); fail("Voice connection closed"); } };
      await new Promise((ok, bad) => { me.ws.onopen = ok; me.ws.onerror = () => bad(new Error("voice socket failed")); });
      // No automatic gain: it pumps the level up until speech clips, and Whisper mishears clipped words.
      me.stream = await navigator.mediaDevices.getUserMedia(
        { audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: false, channelCount: 1 } });
      if (v !== me) { me.stream.getTracks().forEach((t) => t.stop()); return; }
      try { await capture(me); } catch (err) { // a browser that cannot feed the mic into a 16 kHz context
        me.inCtx.close().catch(() => {}); me.inCtx = new AudioContext(); await capture(me);
      }
      me.outCtx = me.inCtx; // the reply plays through the capture context's gate (see WORKLET)
      note("mic open");
      await me.inCtx.resume();
      setToken(res.token);
      pttBtn.disabled = mode !== "ptt";
      setStatus(mode === "ptt" ? "Hold the button (or Space) and talk" : "Listening…");
    } catch (err) {
      if (v === me) { stop(); fail(`Voice: ${err.message || err}`); }
    }
  }

  async function capture(me) {
    const blobUrl = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
    try { await me.inCtx.audioWorklet.addModule(blobUrl); } finally { URL.revokeObjectURL(blobUrl); }
    const source = me.inCtx.createMediaStreamSource(me.stream);
    const node = new AudioWorkletNode(me.inCtx, "cf-capture", { numberOfInputs: 1, numberOfOutputs: 0 });
    node.port.onmessage = (e) => { if (v !== me) return; if (Array.isArray(e.data)) onFrame(e.data[0], capturedAt(e.data[1])); else onMute(e.data); };
    source.connect(node);
    me.cap = node;
    me.gate = new AudioWorkletNode(me.inCtx, "cf-gate", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
    me.gate.connect(me.inCtx.destination);
  }

  function stop() {
    if (!v) return;
    const old = v;
    if (old.utt) send({ type: "speech_abort" });
    v = null;
    for (const c of old.live) { c.src.onended = null; try { c.src.stop(); } catch (e) { /* not started */ } }
    if (old.ws) { old.ws.onclose = null; try { old.ws.close(); } catch (e) { /* already closed */ } }
    if (old.stream) old.stream.getTracks().forEach((t) => t.stop());
    old.inCtx.close().catch(() => {});
    setToken("");
    micBtn.textContent = "🎤 Voice off"; micBtn.setAttribute("aria-pressed", "false");
    pttBtn.disabled = true; pttBtn.classList.remove("cf-active");
    setStatus("Voice is off"); updateState();
  }
  stats.off = stop;

  // ----------------------------------------------------------------------------------- capture + VAD
  function rms(f) { let s = 0; for (let i = 0; i < f.length; i++) s += f[i] * f[i]; return Math.sqrt(s / f.length); }

  function toPcm16(f) { // int16 LE: every browser platform is little-endian, so the typed array's bytes are
    const out = new Int16Array(f.length);
    for (let i = 0; i < f.length; i++) { const s = Math.max(-1, Math.min(1, f[i])); out[i] = s < 0 ? s * 0x8000 : s * 0x7fff; }
    return out.buffer;
  }

  // When a frame's first sample was captured, on the performance.now() clock (the worklet stamps its end
  // in context time): barge-in latency counts from the sound, not from when the frame reached us.
  function capturedAt(endT) {
    return performance.now() - Math.max(0, v.inCtx.currentTime - endT) * 1000 - (FRAME / RATE) * 1000;
  }

  function onFrame(f, now) {
    const level = rms(f);
    v.ring.push(f); if (v.ring.length > PREROLL) v.ring.shift();
    if (v.utt) { sendPcm(f); v.utt.ms += 20; }
    if (v.mode !== "vad" || !v.ready) return;
    // Adaptive noise floor: falls fast, rises slowly (so speech does not become the floor).
    v.floor = v.floor === 0 ? Math.max(level, 1e-4) : v.floor + (level < v.floor ? 0.1 : 0.002) * (level - v.floor);
    const thresh = Math.max(ABS_THRESH, v.floor * FLOOR_K) * (v.live.length && !v.utt ? ECHO_K : 1);
    if (v.live.length && !v.utt && v.cap) v.cap.port.postMessage({ thresh }); // the worklet's barge-in uses it
    const loud = level > thresh;
    if (!v.utt) {
      v.loud = loud ? v.loud + 1 : 0;
      if (v.loud === 1) v.onset = now; // the first loud frame: barge-in latency is measured from here
      if (v.loud >= START_FRAMES) openUtterance(v.onset);
      return;
    }
    const u = v.utt;
    if (loud) {
      u.speechMs += 20; u.silentMs = 0;
      if (u.paused) { u.paused = false; send({ type: "speech_resume" }); } // the early transcript is void
    } else {
      u.silentMs += 20;
      // A short pause: let the server transcribe now, while we wait out the endpoint.
      if (!u.paused && u.silentMs >= PAUSE_MS && u.speechMs >= MIN_SPEECH_MS) { u.paused = true; send({ type: "speech_pause" }); }
    }
    if (u.silentMs >= ENDPOINT_MS) closeUtterance(ENDPOINT_MS);
    else if (u.ms >= v.maxUttMs) closeUtterance(0);
  }

  // The worklet muted the reply: a barge-in, decided on the audio thread. `mute`/`onset` are context times.
  function onMute(m) {
    const toPerf = (t) => performance.now() - Math.max(0, v.inCtx.currentTime - t) * 1000;
    if (v.utt) return gate(false); // already an utterance (push to talk, or the page's VAD was first)
    openUtterance(toPerf(m.onset) - (FRAME / RATE) * 1000, { at: toPerf(m.mute), ctxTime: m.mute });
  }

  function gate(playing) { if (v && v.cap) v.cap.port.postMessage({ muted: false, playing }); }

  function openUtterance(onset, muted) {
    const bargeIn = stopPlayback(v.active, true, false, muted && muted.ctxTime);
    gate(false);
    if (bargeIn) stats.bargeIns.push({ turn: bargeIn.turn, onsetToStopMs: (muted ? muted.at : bargeIn.at) - onset,
                                       cut: bargeIn.cut });
    send({ type: "speech_start", barge_in: !!bargeIn });
    note(bargeIn ? "speech_start barge_in" : "speech_start");
    v.utt = { ms: 0, speechMs: START_FRAMES * 20, silentMs: 0, paused: false };
    for (const f of v.ring) sendPcm(f); // pre-roll: the word's beginning came before the decision
    v.utt.ms = v.ring.length * 20;
    setStatus("Hearing you…"); updateState();
  }

  function closeUtterance(endpointMs) {
    const utt = v.utt; v.utt = null; v.loud = 0;
    if (endpointMs > 0 && utt.speechMs < MIN_SPEECH_MS) { send({ type: "speech_abort" }); note("speech_abort"); setStatus("Listening…"); }
    else { send({ type: "speech_end", endpoint_ms: endpointMs }); note("speech_end"); v.eosAt = performance.now(); setStatus("Thinking…"); }
    updateState();
  }

  // Push to talk: the press opens the utterance at once (no VAD), the release ends it with no endpoint wait.
  function pttDown(e) {
    if (!v || v.mode !== "ptt" || !v.ready || v.utt) return;
    if (e) e.preventDefault();
    pttBtn.classList.add("cf-active");
    openUtterance(performance.now());
  }
  function pttUp() {
    pttBtn.classList.remove("cf-active");
    if (v && v.mode === "ptt" && v.utt) closeUtterance(0);
  }

  // ------------------------------------------------------------------------------------------ playback
  function onMessage(data) {
    if (data instanceof ArrayBuffer) return onAudio(data);
    let m; try { m = JSON.parse(data); } catch (e) { return; }
    note(m.type);
    if (m.type === "ready") { v.ready = true; if (m.max_utterance_s) v.maxUttMs = m.max_utterance_s * 1000; }
    else if (m.type === "turn") {
      if (v.turn && v.turn !== m.turn) stopPlayback(v.turn, false, true); // the newest turn is current
      v.turn = v.active = stats.lastTurn = m.turn;
    } else if (m.type === "cancel") stopPlayback(m.turn, true);
    else if (m.type === "end") { if (v.active === m.turn) v.active = null; if (v.utt == null) setStatus("Listening…"); }
    else if (m.type === "transcript") onTranscript(m);
    else if (m.type === "error") fail(`Voice: ${m.message}`);
    updateState();
  }

  function onAudio(buf) {
    const n = new DataView(buf).getUint32(0, true);
    const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
    if (head.turn !== v.turn || v.utt) return; // another turn's audio, or the user is talking over it
    const pcm = new Int16Array(buf.slice(4 + n, 4 + n + 2 * Math.floor((buf.byteLength - 4 - n) / 2)));
    if (!pcm.length) return;
    const ctx = v.outCtx, ab = ctx.createBuffer(1, pcm.length, head.rate), ch = ab.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource(); src.buffer = ab; src.connect(v.gate || ctx.destination);
    const now = ctx.currentTime;
    const at = Math.max(now + 0.02, v.lastEnd); // back to back; a 20 ms margin so the start is never late
    src.start(at); v.lastEnd = at + ab.duration;
    const c = { turn: head.turn, phrase: head.phrase, seq: head.seq, text: head.text, rate: head.rate,
                samples: pcm.length, start: heardAt(ctx, at), duration: ab.duration * 1000,
                cut: false, src, at };
    stats.chunks.push(c); v.live.push(c); note(`audio ${c.phrase}/${c.seq} in ${Math.round((at - now) * 1000)} ms`);
    if (v.live.length === 1 && v.cap) v.cap.port.postMessage({ playing: true });
    src.onended = () => {
      if (!v) return;
      v.live = v.live.filter((x) => x !== c); played(c, c.samples); updateState();
      if (!v.live.length && v.cap) v.cap.port.postMessage({ playing: false });
    };
    send({ type: "started", turn: c.turn, phrase: c.phrase, seq: c.seq, start_in_ms: (at - now) * 1000 });
    if (!v.firstSent.has(c.turn)) {
      v.firstSent.add(c.turn);
      if (v.eosAt != null) { // only a voiced turn has an end of speech to measure from
        const ms = c.start - v.eosAt; v.eosAt = null;
        stats.eosToFirstAudioMs.push(ms);
        send({ type: "first_audio", turn: c.turn, eos_to_first_audio_ms: ms });
      }
    }
    setStatus("Speaking…"); updateState();
  }

  // When context time `t` reaches the speaker, on the performance.now() clock: the output timestamp pair
  // includes the device's output latency; without one, the (now, currentTime) pair is the estimate.
  function heardAt(ctx, t) {
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
    if (ts && ts.performanceTime > 0 && ts.contextTime > 0) return ts.performanceTime + (t - ts.contextTime) * 1000;
    return performance.now() + (t - ctx.currentTime) * 1000;
  }

  function played(c, samples) { stats.playedSamples += samples; stats.playedMs += (1000 * samples) / c.rate; }

  // Stop every scheduled source of `turn` at once; report `cut` for the sentence that was playing (or
  // `stopped`). Returns {turn, at, cut} when there was something to stop (or the turn was still running).
  function stopPlayback(turn, report, silent, mutedAt) {
    if (!v || !turn) return null;
    const ctx = v.outCtx, now = mutedAt || ctx.currentTime; // the gate may have silenced it a moment ago
    const mine = v.live.filter((c) => c.turn === turn);
    if (!mine.length && v.active !== turn) { if (report && !silent) send({ type: "stopped", turn }); return null; }
    let playing = null;
    for (const c of mine) {
      c.src.onended = null;
      try { c.src.stop(); } catch (e) { /* not started */ }
      if (c.at + c.samples / c.rate <= now) played(c, c.samples);           // ended, onended not yet run
      else if (c.at <= now) playing = c;
    }
    const at = performance.now();
    v.live = v.live.filter((c) => c.turn !== turn);
    if (!v.live.length) { v.lastEnd = 0; gate(false); }
    if (playing) {
      const ms = (now - playing.at) * 1000;
      playing.cut = true; played(playing, Math.round((ms * playing.rate) / 1000));
      if (!silent) send({ type: "cut", turn, phrase: playing.phrase, seq: playing.seq, played_ms: ms });
    } else if (!silent) send({ type: "stopped", turn });
    if (v.active === turn) v.active = null;
    if (v.turn === turn) v.turn = null; // later frames of this turn are dropped
    updateState();
    return { turn, at, cut: !!playing };
  }

  // ------------------------------------------------------------------------------------------ transcript
  function onTranscript(m) {
    stats.transcripts.push(m.text || "");
    const text = (m.text || "").trim();
    if (!text) { v.eosAt = null; setStatus(`Didn't catch that${m.reason ? ` (${m.reason})` : ""}`); return; }
    setStatus(`You said: “${text}”`);
    const box = document.querySelector("#cf-message textarea"), sendBtn = document.querySelector("#cf-send");
    if (!box || !sendBtn) return fail("voice: the chat box is missing");
    box.value = text;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    setTimeout(() => sendBtn.click(), 0); // after the textbox's own input handler has taken the value
  }

  // ------------------------------------------------------------------------------------------ controls
  micBtn.addEventListener("click", () => (v ? stop() : start()));
  modeSel.addEventListener("change", () => { if (v) { stop(); start(); } });
  pttBtn.addEventListener("pointerdown", (e) => { pttBtn.setPointerCapture(e.pointerId); pttDown(e); });
  pttBtn.addEventListener("pointerup", pttUp);
  pttBtn.addEventListener("pointercancel", pttUp);
  document.addEventListener("keydown", (e) => {
    if (e.code !== "Space" || e.repeat || !v || v.mode !== "ptt" || typing(document.activeElement)) return;
    pttDown(e);
  });
  document.addEventListener("keyup", (e) => { if (e.code === "Space" && v && v.mode === "ptt" && v.utt) { e.preventDefault(); pttUp(); } });
  window.addEventListener("pagehide", stop);
})();
