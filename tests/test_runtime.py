"""Runs wherever its users run it: the llama.cpp probe and its transformers fallback, a clean exit after a
cut-off turn, `doctor`, the database journal on network mounts, and the Space's declared Python.

The fallback is proven for real: `CONVFILL_PROBE_SIGNAL=ILL` makes the probe's child process kill itself
with SIGILL, exactly what a llama.cpp build for another CPU does at its first decode.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from convfill import MIN_PYTHON, paths
from convfill.prompt import PhraseContext
from convfill.talkers import probe, weights

ROOT = Path(__file__).resolve().parents[1]
VERIFY = (
    PhraseContext("Who wrote Pride and Prejudice?", None),
    PhraseContext("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by Jane Austen.",
                  earlier=("Good question, let me think.",)),
    PhraseContext("How tall is Mount Everest?", None, earlier=("Hmm, let me check that.",)),
)


@pytest.fixture
def crashing_probe(monkeypatch):
    """llama.cpp 'dies of SIGILL' in its probe, in this process and in any child that inherits the env."""
    monkeypatch.setenv(probe.FAULT_ENV, "ILL")
    probe._probe_cached.cache_clear()
    yield
    probe._probe_cached.cache_clear()


def test_probe_reports_the_signal_in_one_line_with_the_fix(crashing_probe):
    result = probe.run_probe()
    assert not result.ok and result.signal == "SIGILL"
    assert "\n" not in result.detail and "SIGILL" in result.detail
    assert "transformers runtime" in result.detail and "pip install" in result.detail
    with pytest.raises(probe.RuntimeUnavailable, match="SIGILL"):
        probe.require_llamacpp()


def test_a_missing_llamacpp_build_is_a_fallback_not_a_crash(monkeypatch):
    """A Space whose llama-cpp-python build is missing must still start: the probe says so."""
    monkeypatch.setattr(probe, "_library_files", lambda: [])
    result = probe.run_probe()
    assert not result.ok and result.signal is None and "not installed" in result.detail
    assert "transformers runtime" in result.detail


@pytest.mark.model
def test_probe_passes_on_this_machine_and_its_verdict_is_cached(model_home):
    probe._probe_cached.cache_clear()
    status = probe.llamacpp_status()
    assert status.ok, status.detail
    cached = json.loads((model_home / "llamacpp-probe.json").read_text())
    assert cached["ok"] and cached["key"] == probe.probe_key()
    # every weight type was timed on this CPU; the Talker runs the fastest prefill that decodes fast enough
    assert set(status.timings) == set(weights.CANDIDATES), status.detail
    assert all(t["prefill_ms"] > 0 and t["step_ms"] > 0 and t["rounds"] == probe.TIMING_ROUNDS
               for t in status.timings.values())
    assert status.weights == weights.choose(status.timings) and status.weights in status.detail
    assert cached["weights"] == status.weights


def test_the_weight_type_is_the_fastest_prefill_that_decodes_fast_enough():
    t = {"q8_0": {"prefill_ms": 66.0, "step_ms": 8.1}, "bf16": {"prefill_ms": 45.6, "step_ms": 10.0}}
    assert weights.choose(t) == "bf16"
    t["bf16"]["step_ms"] = 14.0  # under 80 tokens/s: the shorter prefill does not pay for it
    assert weights.choose(t) == "q8_0"
    t["q8_0"]["step_ms"] = 15.0  # neither decodes that fast: the one that says a first phrase soonest
    assert weights.choose(t) == "bf16"  # 45.6 + 12 x 14 ms against 66 + 12 x 15
    zen3 = {"q8_0": {"prefill_ms": 129.2, "step_ms": 17.31}, "q8_0-flash": {"prefill_ms": 127.2, "step_ms": 14.23},
            "bf16": {"prefill_ms": 118.5, "step_ms": 20.87}}  # an AMD EPYC Zen 3's probe: none decodes at 80/s
    assert weights.choose(zen3) == "q8_0-flash"  # not the shortest prefill, whose phrases come 1.5x slower
    unknown = {"q8_0": {"prefill_ms": 66.0, "step_ms": 8.1}, "f99": {"prefill_ms": 1, "step_ms": 1}}
    assert weights.choose(unknown) == "q8_0"  # a type this code does not know is never chosen
    assert weights.choose({"bf16": {}}) is None and weights.choose({}) is None


def test_a_child_that_ran_out_of_time_while_timing_still_passes_on_what_it_timed():
    out = 'probe ok (4 pieces)\ntimed q8_0 {"prefill_ms": 66.0, "step_ms": 8.1}\n'
    r = probe._passed(out, None, "", 300.0, "k")
    assert r.ok and r.weights == "q8_0" and "ran out of time" in r.detail and "66.0 / 8.1 ms" in r.detail
    r = probe._passed("probe ok (4 pieces)\n", -4, "", 9.0, "k")  # SIGILL before any type was timed
    assert r.ok and r.weights == weights.DEFAULT and r.timings == {} and "SIGILL" in r.detail


@pytest.mark.model
def test_a_weight_type_that_crashes_when_timed_is_not_chosen(monkeypatch):
    """The child passes the crash check on the default path, then "dies of SIGILL" loading BF16: llama.cpp is
    still used, on a type that ran (timed once each: the child died before timing them in turn)."""
    monkeypatch.setenv(probe.FAULT_ENV, "ILL@bf16")
    result = probe.run_probe()
    assert result.ok and set(result.timings) == {"q8_0", "q8_0-flash"} and result.weights in result.timings
    assert all(t["rounds"] == 1 for t in result.timings.values())  # the child died before the rounds in turn
    assert "SIGILL" in result.detail and "\n" not in result.detail


def test_unpermute_inverts_the_exporters_permute():
    from convfill.talkers.transformers import unpermute
    from training.export_gguf import permute

    w = np.arange(2 * 4 * 8 * 3, dtype=np.float32).reshape(2 * 4 * 8, 3)
    assert np.array_equal(unpermute(permute(w, 4), 4), w) and not np.array_equal(permute(w, 4), w)


@pytest.fixture(scope="module")
def fallback_talker():
    """What get_talker("llamacpp") gives when llama.cpp's probe dies: loaded once for this module."""
    from convfill.talkers import get_talker

    os.environ[probe.FAULT_ENV] = "ILL"
    probe._probe_cached.cache_clear()
    try:
        talker = get_talker("llamacpp")
    finally:  # only while loading: later tests of this module must see the real llama.cpp
        os.environ.pop(probe.FAULT_ENV, None)
        probe._probe_cached.cache_clear()
    yield talker


@pytest.mark.model
def test_fallback_is_the_same_talker_on_transformers(fallback_talker, real_talker):
    d = fallback_talker.describe()
    assert d["runtime"] == "transformers" and "SIGILL" in d["fallback"]
    assert d["model"] == real_talker.describe()["model"] and d["style"] == "convfill"
    # the seed adapter is folded into the dequantized weights: greedy phrases match llama.cpp's
    for ctx in VERIFY:
        ours = "".join(fallback_talker.generate(fallback_talker.prompt(ctx), 24, threading.Event()))
        theirs = "".join(real_talker.generate(real_talker.prompt(ctx), 24, threading.Event()))
        assert ours == theirs, ctx


@pytest.mark.model
async def test_fallback_runs_multi_phrase_turns(fallback_talker):
    """From the second phrase on, the transformers runtime reuses its cached prefix (`cache.crop`)."""
    from convfill.config import EngineConfig
    from convfill.engine import Engine
    from convfill.events import PhraseEnded
    from convfill.reasoners.oracle import OracleReasoner

    knowledge = "Jane Austen wrote Pride and Prejudice. It was first published in 1813."
    engine = Engine(fallback_talker, OracleReasoner(knowledge, first_chunk_s=0.3, gap_s=0.1),
                    EngineConfig(max_phrase_tokens=16, turn_timeout_s=300))
    for question in ("Who wrote Pride and Prejudice?", "And when was it published?"):
        phrases = [e for e in [ev async for ev in engine.turn(question)] if isinstance(e, PhraseEnded)]
        assert len(phrases) >= 3 and all(p.text.strip() for p in phrases)
        assert any(p.source == "chunk" for p in phrases)
    said = " ".join(p.text for p in phrases)
    assert "1813" in said or "eighteen" in said.lower()


@pytest.mark.model
def test_app_shows_the_fallback(crashing_probe, fallback_talker):
    from app import build_app
    from convfill.ui import AppConfig
    from convfill.ui.session import DEFAULT_TALKER, ModelPool

    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, fallback_talker)
    demo = build_app(AppConfig(), pool=pool)
    texts = [c.get("props", {}).get("value") for c in demo.config["components"]]
    banner = [t for t in texts if isinstance(t, str) and "Running without llama.cpp" in t]
    assert banner and "SIGILL" in banner[0]
    reasoner = next(c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "cf-reasoner")
    assert reasoner["props"]["value"] == "oracle"  # the local Reasoner needs llama.cpp too
    assert any("local" in str(choice) and "unavailable" in str(choice) for choice in reasoner["props"]["choices"])


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "convfill", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.model
def test_bench_json_names_the_fallback():
    proc = _cli("bench", "--json", "--rounds", "0", env={probe.FAULT_ENV: "ILL"})
    assert proc.returncode == 0, proc.stderr
    talker = json.loads(proc.stdout.strip().splitlines()[-1])["talker"]
    assert talker["runtime"] == "transformers" and "SIGILL" in talker["fallback"]
    assert "SIGILL" in proc.stderr  # said once, on stderr, for people


@pytest.mark.model
def test_a_turn_cut_off_mid_phrase_exits_cleanly():
    """Before: a daemon generation thread was still inside llama.cpp while the interpreter freed the model,
    a segfault at exit in 4 of 6 runs here. Now the thread is joined first."""
    codes = []
    for _ in range(5):
        proc = _cli("turn", "Tell me everything about the history of Rome, in detail", "--knowledge",
                    "Rome was founded in 753 BC. It became an empire.", "--reasoner-delay", "5", "--silence", "0.1",
                    "--turn-timeout-s", "1", "--json")
        codes.append(proc.returncode)
        assert '"reason": "timeout"' in proc.stdout, proc.stderr[-500:]
    assert codes == [0] * 5, [signal.Signals(-c).name if c < 0 else c for c in codes]


@pytest.mark.model
def test_the_app_keeps_torch_off_llamacpps_cores(monkeypatch, real_talker):
    """torch and llama.cpp share libgomp: a multi-threaded torch call (the NLI judge) left llama.cpp decoding
    at 29 instead of 71 tok/s for the rest of the process. The app runs torch on one thread."""
    import torch

    from app import build_app
    from convfill.ui import AppConfig
    from convfill.ui.session import DEFAULT_TALKER, ModelPool

    before = torch.get_num_threads()
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, real_talker)
    try:
        torch.set_num_threads(2)
        build_app(AppConfig(), pool=pool)
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("CONVFILL_TORCH_THREADS", "2")
        build_app(AppConfig(), pool=pool)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ doctor
def _doctor(env=None):
    proc = _cli("doctor", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    return proc.returncode, rows


@pytest.mark.model
def test_doctor_reports_every_part_and_never_a_key(tmp_path):
    key = "sk-ant-test-DoctorMustNotPrintThis0042"
    code, rows = _doctor({"ANTHROPIC_API_KEY": key})
    assert {"python", "llama.cpp", "Talker weights", "transformers runtime", "NLI judge", "ASR (Whisper)",
            "TTS (Piper)", "database", "Reasoner local", "Reasoner oracle", "Reasoner openai",
            "Reasoner anthropic", "Reasoner gemini", "chromium", "public mode"} <= set(rows)
    assert all(r["status"] in ("OK", "WARN", "FAIL") for r in rows.values())
    assert all(r["fix"] for r in rows.values() if r["status"] != "OK")  # every non-OK row says what to do
    assert rows["python"]["status"] == rows["llama.cpp"]["status"] == rows["database"]["status"] == "OK"
    assert rows["Reasoner anthropic"]["status"] == "OK" and "ANTHROPIC_API_KEY is set" in rows["Reasoner anthropic"]["detail"]
    assert rows["Reasoner openai"]["status"] == "WARN" and "OPENAI_API_KEY" in rows["Reasoner openai"]["fix"]
    assert key not in json.dumps(rows) and code == 0


@pytest.mark.model
def test_doctor_explains_a_crashing_llamacpp_and_an_unusable_database(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, rows = _doctor({probe.FAULT_ENV: "ILL", "CONVFILL_DB": str(blocker / "convfill.db")})
    assert rows["llama.cpp"]["status"] == "WARN" and "SIGILL" in rows["llama.cpp"]["detail"]
    assert "pip install" in rows["llama.cpp"]["fix"]
    assert rows["Reasoner local"]["status"] == "WARN"
    assert rows["database"]["status"] == "FAIL" and code == 1


def test_doctor_database_row_names_the_journal_mode(monkeypatch, tmp_path):
    from convfill import doctor

    monkeypatch.setenv("CONVFILL_DB", str(tmp_path / "convfill.db"))
    monkeypatch.setenv(paths.JOURNAL_ENV, "delete")
    row = doctor.check_database()
    assert row.status == "OK" and "journal mode delete" in row.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # its probe database is gone again


# ----------------------------------------------------------------------------------- database journal
MOUNTS = """/dev/vda / ext4 rw 0 0
bucket /data fuse.hf-mount rw 0 0
srv:/export /mnt/nfs nfs4 rw 0 0
"""


def test_wal_only_on_local_disks(monkeypatch):
    assert paths.filesystem_type("/data/convfill.db", MOUNTS) == "fuse.hf-mount"
    assert paths.on_network_fs("/data/x/convfill.db", MOUNTS) and paths.on_network_fs("/mnt/nfs/db", MOUNTS)
    assert not paths.on_network_fs("/home/me/convfill.db", MOUNTS) and not paths.on_network_fs("/database", MOUNTS)
    monkeypatch.setenv(paths.JOURNAL_ENV, "delete")
    assert paths.journal_mode("/home/me/convfill.db") == "delete"
    monkeypatch.setenv(paths.JOURNAL_ENV, "wal")
    assert paths.journal_mode("/home/me/convfill.db") == "wal"


def test_store_uses_the_configured_journal(monkeypatch, tmp_path):
    from labeling.store import LabelStore

    monkeypatch.setenv(paths.JOURNAL_ENV, "delete")
    store = LabelStore(tmp_path / "a.db")
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "delete"
    monkeypatch.delenv(paths.JOURNAL_ENV)
    store = LabelStore(tmp_path / "b.db")
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------------------------------------------- the Space boots
def _front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("---\n")[1]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block.splitlines() if ":" in line
                                              and not line.startswith(" "))}


def _lowest_python_that_parses_the_code() -> tuple[int, int]:
    sources = [p for d in ("convfill", "labeling", "training") for p in (ROOT / d).rglob("*.py")]
    sources.append(ROOT / "app.py")
    for minor in range(8, 20):
        try:
            for p in sources:
                ast.parse(p.read_text(), str(p), feature_version=(3, minor))
        except SyntaxError:
            continue
        return 3, minor
    raise AssertionError("no Python 3 version parses the code")


def test_declared_python_matches_the_code():
    import tomllib

    declared = ".".join(map(str, MIN_PYTHON))
    assert _front_matter()["python_version"].strip('"') == declared
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == f">={declared}"
    assert _lowest_python_that_parses_the_code() <= MIN_PYTHON  # every file parses as the declared version
    assert _lowest_python_that_parses_the_code() >= (3, 11)  # except* in the engine: 3.10 cannot even compile it


def test_space_front_matter_preloads_the_judge_and_points_at_app_py():
    fm = (ROOT / "README.md").read_text().split("---\n")[1]
    assert re.search(r"^app_file: app\.py$", fm, re.M) and re.search(r"^sdk: gradio$", fm, re.M)
    assert re.search(r"^preload_from_hub:\n(  - .*\n)*  - MoritzLaurer/DeBERTa-v3-base-mnli", fm + "\n", re.M)
    from convfill.nli.judge import DEFAULT_MODEL

    assert DEFAULT_MODEL == "MoritzLaurer/DeBERTa-v3-base-mnli"


def test_requirements_build_llamacpp_without_amx_on_x86_and_plainly_elsewhere():
    """The fix lives in the project's files: pip reads per-requirement build settings from requirements.txt."""
    import shlex

    from packaging.requirements import Requirement

    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.startswith("llama-cpp-python")]
    reqs = [Requirement(line.split(" --")[0]) for line in lines]
    assert {str(r.specifier) for r in reqs} == {"==0.3.36"} and len(reqs) == 2
    on = {m: [r.marker.evaluate({"platform_machine": m}) for r in reqs] for m in ("x86_64", "aarch64", "arm64")}
    assert on == {"x86_64": [True, False], "aarch64": [False, True], "arm64": [False, True]}  # one line each
    x86_opts = shlex.split(lines[0][lines[0].index(" --"):])
    (setting,) = [o for o in x86_opts if o.startswith("--config-settings=")]
    args = setting.removeprefix("--config-settings=cmake.args=").split(";")
    for var in ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"):
        (flags,) = [a.split("=", 1)[1].split() for a in args if a.startswith(f"-D{var}=")]
        assert set(flags) == {"-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"}
    assert " --" not in lines[1]  # ARM/macOS: llama.cpp's own defaults


@pytest.mark.model
def test_the_installed_build_has_no_amx_kernels():
    """What the requirements line produced here: on an AMX CPU, llama.cpp must not report AMX in use."""
    if probe.llamacpp_status().ok:
        import llama_cpp

        info = llama_cpp.llama_print_system_info().decode()
        assert "AMX_INT8 = 1" not in info, info
