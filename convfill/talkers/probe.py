"""Is llama.cpp safe to run on this machine? Asked once, in a child process, before anything loads it.

A llama.cpp build can die of a signal instead of raising: a from-source build compiled for another CPU
(`-march=native` on a build machine), or a kernel path the CPU or hypervisor does not support (the AMX
tiles on some Intel Xeons, SIGILL at the first decode). A crash in our own process would take the app
down with every visitor's session, so the first use of llama.cpp in a process runs the real load path
(the shipped GGUF, its Q8_0 copy, the seed adapter, a few decoded tokens) in a child first. If the child
dies, `require_llamacpp()` raises `RuntimeUnavailable` with one line saying which signal and what to do,
and `convfill.talkers.get_talker` falls back to the transformers runtime on the same weights.

After that check the child loads each weight type and times it once (a type that crashes or fails is left
out), then times them in turn for `TIMING_ROUNDS` rounds (`weights.Timer`; ~15-25 s on a first run: it makes
their copies); the Talker runs the fastest (`ProbeResult.weights`).

The verdict is cached in `$CONVFILL_HOME/llamacpp-probe.json` keyed by the llama.cpp library files, the
Python executable and the CPU, so a new build or a new machine is probed again. `CONVFILL_PROBE_SIGNAL`
(e.g. `ILL`) makes the child kill itself with that signal: how tests and `doctor` prove the fallback;
`ILL@bf16` does it only when the child is about to time that weight type.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import paths
from ..errors import TalkerLoadError
from . import weights

PROBE_TOKENS = 4
PROBE_VERSION = "3"  # what the child does: 3 = the crash check, then the weight types timed in turn
TIMING_ROUNDS = 5  # per weight type; ~0.5 s each here
PROBE_TIMEOUT_S = 300.0  # a first run converts the weight copies; a slow shared CPU can take a while
_IN_CHILD = "CONVFILL_PROBING"
FAULT_ENV = "CONVFILL_PROBE_SIGNAL"
REINSTALL = ("pip install --force-reinstall --no-deps --no-cache-dir -r requirements.txt "
             "(the project's requirements build llama.cpp for any x86-64 CPU)")


class RuntimeUnavailable(TalkerLoadError):
    """llama.cpp cannot run here (not installed, or its probe died); the message is one line."""


@dataclass(frozen=True)
class ProbeResult:
    """What the child run showed.

    Parameters:
        ok: llama.cpp loaded the shipped Talker and decoded tokens.
        detail: one line for people (what happened and what to do).
        signal: the signal's name when the child was killed by one ("SIGILL").
        seconds: how long the child ran.
        key: what the verdict is valid for (library files, Python, CPU).
        weights: the weight type the Talker runs (`weights.CANDIDATES`), the fastest the child timed.
        timings: {weight type: what its `weights.Timer` measured}, for `doctor` and docs/benchmarks.md.
    """

    ok: bool
    detail: str
    signal: str | None = None
    seconds: float = 0.0
    key: str = ""
    weights: str | None = None
    timings: dict | None = None


_SIGNAL_MEANING = {
    "SIGILL": "an instruction this CPU cannot run (a build for another CPU, or llama.cpp's AMX path)",
    "SIGSEGV": "a memory fault inside llama.cpp",
    "SIGBUS": "a memory fault inside llama.cpp",
    "SIGABRT": "llama.cpp aborted",
    "SIGFPE": "an arithmetic fault inside llama.cpp",
    "SIGKILL": "it was killed (out of memory?)",
}


def _library_files() -> list[Path]:
    spec = importlib.util.find_spec("llama_cpp")  # locates the package without loading the library
    if spec is None or not spec.submodule_search_locations:
        return []
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return sorted(p for p in lib.glob("*") if p.suffix in (".so", ".dylib", ".dll") or ".so." in p.name)


def _cpu_signature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


def probe_key() -> str:
    """What a verdict depends on: the library files (path, size, mtime), the interpreter and the CPU."""
    h = hashlib.sha256()
    for p in _library_files():
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(sys.executable.encode() + b"\n" + _cpu_signature().encode())
    h.update((os.environ.get(FAULT_ENV) or "").encode() + PROBE_VERSION.encode())
    return h.hexdigest()[:16]


def _cache_file() -> Path:
    return paths.home() / "llamacpp-probe.json"


def _read_cache(key: str) -> ProbeResult | None:
    try:
        data = json.loads(_cache_file().read_text())
        return ProbeResult(**data) if data.get("key") == key else None
    except (OSError, ValueError, TypeError):
        return None


def _write_cache(result: ProbeResult) -> None:
    path = _cache_file()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(asdict(result)))
        os.replace(tmp, path)
    except OSError:  # a read-only home only costs a probe per process
        tmp.unlink(missing_ok=True)


def _describe_exit(code: int, stderr: str) -> tuple[str | None, str]:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        meaning = _SIGNAL_MEANING.get(name, "a crash inside llama.cpp")
        return name, (f"llama.cpp died of {name} in a test run ({meaning}); using the transformers runtime "
                      f"instead (slower). To fix: {REINSTALL}")
    last = next((line for line in reversed(stderr.strip().splitlines()) if line.strip()), f"exit code {code}")
    return None, f"llama.cpp failed its test run ({last.strip()[:300]}); using the transformers runtime instead"


def run_probe(timeout_s: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Run the child now (no cache) and say what happened."""
    key = probe_key()
    if not _library_files():
        return ProbeResult(False, "llama-cpp-python is not installed; using the transformers runtime "
                                  f"instead. To fix: {REINSTALL}", key=key)
    # The child imports this package from wherever this process did, whatever the working directory.
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, _IN_CHILD: "1",
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "convfill.talkers.probe"], env=env, capture_output=True,
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        stdout, code, stderr = proc.stdout, proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:  # past the crash check, only the timing may have run out of time
        stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, stderr = None, ""
        if "probe ok" not in stdout:
            return ProbeResult(False, f"llama.cpp's test run did not finish in {timeout_s:g} s; using the "
                                      "transformers runtime instead", seconds=timeout_s, key=key)
    seconds = round(time.monotonic() - t0, 2)
    if "probe ok" in stdout:  # the default path ran; a weight type timed after it may still have died
        return _passed(stdout, code, stderr, seconds, key)
    sig, detail = _describe_exit(code, stderr)
    return ProbeResult(False, detail, signal=sig, seconds=seconds, key=key)


def _passed(stdout: str, code: int | None, stderr: str, seconds: float, key: str) -> ProbeResult:
    """The verdict of a child that passed the crash check: the weight type chosen from the lines it timed."""
    timings = {}
    for line in stdout.splitlines():
        if line.startswith("timed "):
            name, _, data = line.removeprefix("timed ").partition(" ")
            timings[name] = json.loads(data)
    chosen = weights.choose(timings) or weights.DEFAULT
    detail = f"llama.cpp decoded {PROBE_TOKENS} tokens in a test run ({seconds:g} s); weights {chosen}"
    if timings:
        detail += " (prefill / decode step: " + "; ".join(
            f"{k} {v.get('prefill_ms', '?')} / {v.get('step_ms', '?')} ms" for k, v in timings.items()) + ")"
    if code is None:
        detail += "; timing the weight types ran out of time"
    elif code:
        sig, _ = _describe_exit(code, stderr)
        detail += f"; timing the weight types ended with {sig or f'exit code {code}'}"
    return ProbeResult(True, detail, seconds=seconds, key=key, weights=chosen, timings=timings)


_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _probe_cached(key: str) -> ProbeResult:
    cached = _read_cache(key)
    if cached is not None:
        return cached
    result = run_probe()
    if result.ok or result.signal:  # a crash or a pass is a property of the build; anything else may pass later
        _write_cache(result)
    return result


def llamacpp_status() -> ProbeResult:
    """The verdict for this machine and build: from this process, the on-disk cache, or a new child run."""
    if os.environ.get(_IN_CHILD):
        return ProbeResult(True, "inside the probe")
    with _lock:  # two sessions loading models at once start one child, not two
        return _probe_cached(probe_key())


def require_llamacpp() -> None:
    """Call before the first llama.cpp import of a process; `RuntimeUnavailable` when it cannot run."""
    status = llamacpp_status()
    if not status.ok:
        raise RuntimeUnavailable(status.detail)


def _child() -> int:
    """The child's work: the default Talker's real load path, then a few greedy tokens; then each weight type
    loaded and timed, then all of them in turn (a line per type and round, printed as it is done: a type that
    crashes when loaded leaves the earlier ones' lines)."""
    fault, _, fault_at = os.environ.get(FAULT_ENV, "").strip().upper().partition("@")

    def crash() -> None:
        os.kill(os.getpid(), getattr(signal, fault if fault.startswith("SIG") else "SIG" + fault))

    if fault and not fault_at:
        crash()
    from ..prompt import PhraseContext
    from .llamacpp import LlamaCppTalker

    talker = LlamaCppTalker()
    prompt = talker.prompt(PhraseContext("Hello, can you hear me?"))
    n = sum(1 for _ in talker.generate(prompt, PROBE_TOKENS, threading.Event()))
    talker.close()
    print(f"probe ok ({n} pieces)", flush=True)
    timers = []
    for w in weights.CANDIDATES.values():  # each loaded and timed once: a type that dies here is left out
        if fault and fault_at == w.name.upper():  # e.g. ILL@BF16: that type's kernels "crash"
            crash()
        try:
            timer = weights.Timer(w)
            timer.run()
        except Exception as e:  # noqa: BLE001 - a type that cannot run here is not chosen
            print(f"{w.name} failed: {e}", file=sys.stderr, flush=True)
            continue
        timers.append(timer)
        print(f"timed {w.name} {json.dumps(timer.result())}", flush=True)
    for _ in range(TIMING_ROUNDS - 1):  # then in turn, round by round; each line replaces that type's last
        for timer in timers:
            timer.run()
            print(f"timed {timer.weights.name} {json.dumps(timer.result())}", flush=True)
    for timer in timers:
        timer.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
