"""tts.models: resolving --model and the prepared-model cache. Nothing here downloads anything."""

from __future__ import annotations

import json
import os

import pytest

from tts import models
from tts.errors import TTSError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TTS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_pip(monkeypatch):
    """Fail loudly if anything tries to fetch a package."""

    def boom(*a, **k):
        raise AssertionError("pip must not run")

    monkeypatch.setattr(models, "_pip", boom)
    monkeypatch.setattr(models.subprocess, "run", boom)


def fake_prepared(name: str, root) -> os.PathLike:
    folder = root / "models" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / models.MARKER).write_text(json.dumps({"name": name}))
    return folder


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TTS_CACHE_DIR", str(tmp_path))
    assert models.cache_dir() == tmp_path
    monkeypatch.delenv("TTS_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "ttscale"


def test_default_is_embedded():
    assert models.DEFAULT_MODEL in models.EMBEDDED
    for spec in models.EMBEDDED.values():
        assert len(spec.packages) == len(spec.files) and len(spec.sha256) == 64


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "no" / "such-model"
    with pytest.raises(TTSError, match="such-model"):
        models.resolve_model(str(missing))
    for s in ("./nope-model", "~/nope-model-xyz", "a/b/c"):
        with pytest.raises(TTSError, match=s.replace(".", r"\.")):
            models.resolve_model(s)


def test_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(TTSError, match="not a model folder") as e:
        models.resolve_model(str(tmp_path))
    assert str(tmp_path) in str(e.value)


def test_file_is_not_a_model(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_text("x")
    with pytest.raises(TTSError, match="not a model folder"):
        models.resolve_model(str(f))


def test_folder_with_config_is_returned(tmp_path, no_pip):
    (tmp_path / "config.json").write_text("{}")
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)


def test_relative_folder_is_made_absolute(tmp_path, monkeypatch, no_pip):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert models.resolve_model("m") == str(tmp_path / "m")


def test_hub_ids_pass_through(tmp_path, monkeypatch, no_pip):
    monkeypatch.chdir(tmp_path)
    for hub_id in ("Qwen/Qwen2.5-0.5B-Instruct", "gpt2"):
        assert models.resolve_model(hub_id) == hub_id


def test_unknown_embedded_name_lists_valid_names(cache, no_pip):
    with pytest.raises(TTSError) as e:
        models.prepare("no-such-model")
    for name in models.EMBEDDED:
        assert name in str(e.value)


def test_prepare_returns_cached_folder_without_pip(cache, no_pip):
    folder = fake_prepared(models.DEFAULT_MODEL, cache)
    logs = []
    assert models.prepare(log=logs.append) == folder
    assert logs == []
    assert models.resolve_model(None) == str(folder)
    name = next(n for n in models.EMBEDDED if n != models.DEFAULT_MODEL)
    other = fake_prepared(name, cache)
    assert models.resolve_model(name) == str(other)


def test_incomplete_folder_is_redone(cache, monkeypatch):
    """A folder without the marker (an interrupted prepare) is rebuilt, and replaced whole."""
    name = models.DEFAULT_MODEL
    stale = cache / "models" / name
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    (stale / "half-written.safetensors").write_text("")
    calls = []

    def fake_fetch(spec, work, gguf, log):
        calls.append("fetch")
        gguf.write_bytes(b"GGUF")

    def fake_dequantize(gguf, out):
        out.mkdir()
        (out / "config.json").write_text('{"ok": true}')
        return {"dtype": "bfloat16"}

    monkeypatch.setattr(models, "_fetch_gguf", fake_fetch)
    monkeypatch.setattr(models, "_dequantize", fake_dequantize)
    folder = models.prepare(name, log=lambda s: None)
    assert calls == ["fetch"]
    assert (folder / models.MARKER).is_file()
    assert not (folder / "half-written.safetensors").exists()
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")) == [name]
    assert models.prepare(name, log=lambda s: None) == folder and calls == ["fetch"]  # cached now


def test_pip_failure_names_the_package(monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for some-pkg==9"

    monkeypatch.setattr(models.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(TTSError, match=r"some-pkg==9.*PyPI must be reachable"):
        models._pip(["download", "some-pkg==9"], "some-pkg==9")
