"""One run spec, one hash: the Python API and `tts bench` key the same configuration alike, and
strategies declare their size, subsamplability, default verifier and parameter model."""

from __future__ import annotations

import json

import pytest

import tts
from tts.cli import main
from tts.errors import TTSError
from tts.experiment.build import build_strategy
from tts.experiment.evaluate import BenchConfig, prepare
from tts.search.tree import StepStrategy
from tts.registry import load_all, lookup


def test_api_and_cli_produce_the_same_record_keys(math100_bank, tmp_path, capsys):
    """Failed before RunSpec: the runner hashed the verifier object and the model name, the
    CLI the verifier's registry name and `replay:<model>@<bank>`, so the keys never matched."""
    from strategies import BestOfN
    from tts.backends.replay import ReplayGenerator
    from verifiers.recorded import RecordedScore

    out = tmp_path / "cli.jsonl"
    assert main(["bench", "--backend", "replay", "--bank", str(math100_bank.path), "--task", "math500",
                 "--strategy", "best_of_n", "-n", "2", "--limit", "3", "--seed", "1", "--out", str(out)]) == 0
    cli = {(r["problem_id"], r["config_hash"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}

    recorded = math100_bank.sampling  # what the bank holds; the rest: Sampling's defaults
    sampling = tts.Sampling(**{k: recorded[k] for k in ("temperature", "top_p", "max_tokens")
                               if recorded.get(k) is not None})
    gen = ReplayGenerator(math100_bank, seed=1, sampling=sampling)
    results = tts.run_many_sync(math100_bank.problems()[:3], BestOfN(n=2), generator=gen,
                                verifier=RecordedScore(), sampling=sampling, task=lookup("task", "math500")(), seed=1)
    api = {(r.problem_id, r.config_hash, r.seed) for r in results}
    assert api == cli and len(cli) == 3


def test_spec_hash_separates_what_differs_and_only_that():
    base = dict(task="gsm8k", strategy="best_of_n", n=4, model="m")
    h = lambda **kw: prepare(BenchConfig(**{**base, **kw}), problems=[]).config_hash  # noqa: E731
    assert h() == h() == h(params={"select": "max"})  # a default given explicitly is the same run
    assert len({h(), h(n=8), h(temperature=0.5), h(model="other"), h(verifier="llm_judge"),
                h(budget={"total_tokens": 5000.0}), h(backend="openai")}) == 7
    assert h(seed=0) == h(seed=3)  # the seed is the key's third part, not in the config hash


def test_strategies_declare_themselves():
    STRATEGIES = load_all("strategy")
    for name, cls in STRATEGIES.items():
        model = cls.params_model()
        if name == "none":  # the pass-through: one sample, no size, no parameters
            assert cls.size_param() is None and not model.model_fields
            continue
        assert cls.size_param() is not None, name  # every other strategy takes a size
        assert cls.size_param() in model.model_fields
        dump = model().model_dump(mode="json")
        if issubclass(cls, StepStrategy):  # keyed as before the step space grew (StepStrategy.config)
            late = ("tokens_per_step", "prune_equivalent", "prune_tau", *getattr(cls, "late_defaults", ()))
            kept = {k: v for k, v in dump.items() if k not in late}
            assert kept.items() <= cls().config().items(), name
        else:
            assert cls().config() == dump or name == "deepprune"
    assert STRATEGIES["weighted_majority"]().config() == {"n": 8}
    assert build_strategy("weighted_majority", 3, {}).select == "weighted"
    assert STRATEGIES["best_of_n"].default_verifier == "confidence"
    assert STRATEGIES["beam_search"].default_verifier == "llm_judge"
    assert build_strategy("deepconf", 4, {"mode": "offline", "warmup": 2}).subsamplable
    assert not build_strategy("deepconf", 4, {"mode": "online", "warmup": 2}).subsamplable


def test_size_by_name_and_alias():
    """-n sets the declared size parameter (never the first one by position); the paper's
    name is accepted as an alias of it."""
    pf = build_strategy("particle_filter", 3, {})
    cls = lookup("strategy", "particle_filter")
    assert pf.config()[cls.size_param()] == 3
    alias = next(a for a in cls.aliases)
    by_alias = build_strategy("particle_filter", None, {alias: 5})
    assert by_alias.config()[cls.size_param()] == 5


@pytest.mark.parametrize("params, match", [
    ({"select": 3}, "select"),
    ({"n": "many"}, "n"),
    ({"beam": 2}, "takes no parameter beam"),
])
def test_parameter_model_validates(params, match):
    with pytest.raises(TTSError, match=match):
        build_strategy("best_of_n", None, params)


def test_a_recorder_is_keyed_as_the_backend_it_wraps_and_a_replay_apart():
    from scripted import ScriptedGenerator

    from strategies import SelfConsistency
    from tts.backends.recording import RecordingGenerator
    from tts.spec import spec_of

    gen = ScriptedGenerator(["\\boxed{1}"])
    assert RecordingGenerator(gen).identity == gen.identity
    assert spec_of(SelfConsistency(2), gen.identity).backend.kind == "scripted"
