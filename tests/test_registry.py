"""Registries: one entry per learner / engine, the config and the CLI read their names, options are checked."""
import inspect

import pytest

from prometar import config
from prometar.config import PROMETAR_DEFAULTS
from prometar.launch import ENGINES, train_parser
from prometar.learners import LEARNERS, PromptLearner, build_learner
from prometar.registry import Registry


def test_every_learner_entry_is_complete():
    assert list(LEARNERS) == ["IVLP", "CoOp", "VPT", "MaPLe"]
    for name, entry in LEARNERS.items():
        assert issubclass(entry.target, PromptLearner) and entry.help, name
        params = list(inspect.signature(entry.target.__init__).parameters.values())[2:]  # after self, clip_model
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params), (name, params)  # no **kwargs swallowing
        assert set(entry.options) == {p.name for p in params}, name  # the entry lists exactly what it accepts
        assert all(key in PROMETAR_DEFAULTS for key in entry.options.values()), name


def test_config_and_cli_read_the_registries():
    assert config.LEARNERS == tuple(LEARNERS)
    engine = next(a for a in train_parser()._actions if a.dest == "engine")
    assert list(engine.choices) == ["auto", *ENGINES] and list(ENGINES) == ["builtin", "dassl"]


def test_options_come_from_the_config_node():
    class Node:
        N_CTX_TEXT, N_CTX_VISION, PROMPT_DEPTH_TEXT, PROMPT_DEPTH_VISION, CTX_INIT = 3, 5, 2, 4, "a"
    assert LEARNERS["CoOp"].options_from(Node) == {"n_ctx_text": 3, "ctx_init": "a"}
    assert LEARNERS["VPT"].options_from(Node) == {"n_ctx_vision": 5, "depth_vision": 4, "ctx_init": "a"}


def test_unknown_option_and_unknown_learner_name_the_valid_ones(small_clip):
    with pytest.raises(TypeError, match=r"'CoOp' has no option 'depth_vision', 'n_ctx_vison'; its options are "
                                        r"n_ctx_text, ctx_init"):
        build_learner("CoOp", small_clip, n_ctx_vison=2, depth_vision=2)
    with pytest.raises(KeyError, match=r"unknown learner 'CoCoOp' \(TRAINER.PROMETAR.LEARNER\); choose one of "
                                       r"IVLP, CoOp, VPT, MaPLe"):
        build_learner("CoCoOp", small_clip)
    assert build_learner("CoOp", small_clip, n_ctx_text=3).n_ctx_text == 3


def test_a_name_registers_once():
    reg = Registry("thing", "--thing")
    reg.register("a")(len)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        reg.register("a")(abs)
    assert "a" in reg and len(reg) == 1 and reg["a"].target is len
