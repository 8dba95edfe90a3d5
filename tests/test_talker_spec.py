"""`TalkerSpec`: the CLI flags, the app's Talker box and the evaluation configs say the same Talker the same
way, and one `build` decides what each field means."""

import argparse

import pytest

from convfill.errors import ConfigError
from convfill.parts import add_model_args
from convfill.talkers import TalkerSpec
from convfill.talkers.llamacpp import SEED_ADAPTER, resolve_adapter
from convfill.talkers.spec import BASE_TALKER, DEFAULT_TALKER


def flags(*argv: str) -> TalkerSpec:
    p = argparse.ArgumentParser()
    add_model_args(p)
    return TalkerSpec.from_args(p.parse_args(list(argv)))


def test_every_constructor_gives_the_same_spec_for_the_same_talker():
    assert flags() == TalkerSpec.from_box("") == TalkerSpec.from_box(DEFAULT_TALKER) == TalkerSpec.parse("") \
        == TalkerSpec()
    assert flags("--talker-lora", "none") == TalkerSpec.from_box(BASE_TALKER) == TalkerSpec.parse("lora=none") \
        == TalkerSpec(lora="none")
    hub = TalkerSpec("transformers", "org/model")
    assert flags("--talker", "transformers", "--talker-model", "org/model") == TalkerSpec.from_box("org/model") \
        == TalkerSpec.from_box("transformers:org/model") == TalkerSpec.parse("talker=transformers,model=org/model") \
        == hub
    gguf = TalkerSpec("llamacpp", "/m/x.GGUF")
    assert flags("--talker-model", "/m/x.GGUF") == TalkerSpec.from_box(" /m/x.GGUF ") \
        == TalkerSpec.parse("model=/m/x.GGUF") == gguf
    assert TalkerSpec.parse("style=prompted", seed=3, threads=1) == TalkerSpec(style="prompted", seed=3, threads=1)
    assert TalkerSpec.parse("talker=gold", seed=2).runtime == "gold"  # evaluation's own runtime, built there
    assert flags("--temperature", "0.7").temperature == 0.7


def test_the_box_base_choice_is_the_bare_base_and_the_default_carries_the_seed_adapter():
    base, default = TalkerSpec.from_box(BASE_TALKER), TalkerSpec.from_box(DEFAULT_TALKER)
    assert base.model is None and resolve_adapter(base.options()["lora_path"], base.model) is None
    assert default.model is None and resolve_adapter(default.options()["lora_path"], default.model) == SEED_ADAPTER


@pytest.mark.parametrize("item", ["temperature=1", "lora", "runtime=llamacpp"])
def test_a_bad_config_item_is_a_config_error_naming_it(item):
    with pytest.raises(ConfigError, match=f"bad Talker config item {item!r}"):
        TalkerSpec.parse(f"style=convfill,{item}")


def test_adapter_and_threads_are_llamacpp_options_only(tmp_path):
    assert TalkerSpec(threads=2, lora="a.gguf").options() == \
        {"style": None, "temperature": 0.0, "seed": 0, "lora_path": "a.gguf", "n_threads": 2}
    assert TalkerSpec().options()["lora_path"] == "auto"  # the runtime's own rule, said once
    assert TalkerSpec("transformers", "org/m", threads=2).options() == {"style": None, "temperature": 0.0, "seed": 0}
    with pytest.raises(ConfigError, match="needs the llamacpp runtime"):
        TalkerSpec("transformers", lora=str(tmp_path / "a.gguf")).build()


def test_every_spelling_of_a_model_file_resolves_to_one_spec(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "link.gguf").symlink_to(tmp_path / "a.gguf")
    specs = {TalkerSpec.from_box(s).resolved() for s in
             (str(tmp_path / "a.gguf"), f"{tmp_path}/./a.gguf", f"{tmp_path}/x/../a.gguf", str(tmp_path / "link.gguf"))}
    assert specs == {TalkerSpec("llamacpp", str((tmp_path / "a.gguf").resolve()))}
    assert TalkerSpec.from_box("org/model").resolved() == TalkerSpec("transformers", "org/model")  # not a file


def test_an_unknown_runtime_fails_at_build_naming_the_runtimes():
    with pytest.raises(ConfigError, match="Unknown talker runtime 'nope'"):
        TalkerSpec.parse("talker=nope").build()


@pytest.mark.model
def test_the_box_base_choice_builds_the_bare_prompted_base():
    talker = TalkerSpec.from_box(BASE_TALKER).build()
    try:
        d = talker.describe()
        assert d["style"] == "prompted" and "+" not in d["model"]  # no adapter in the model's name
    finally:
        talker.close()
