"""The artifact store: run-scoped paths, atomic writes, checksums and manifests.

Layout: `<root>/<pipeline>/runs/<run_id>/<step>/...`; each step writes its files first and its
`manifest.json` last, so a step folder without a manifest is unfinished and is never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ARTIFACT_ROOT_ENV = "FRESHCAST_ARTIFACT_ROOT"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "manifest.json"
# Versions recorded in every manifest; tensorflow/keras only when the step loaded them.
_TRACKED = ("numpy", "pandas", "pyarrow", "scikit-learn", "keras", "tensorflow-cpu", "tensorflow")


class ArtifactError(RuntimeError):
    """An artifact is missing, unfinished or does not match its manifest."""


def artifact_root() -> Path:
    """The store's root: env FRESHCAST_ARTIFACT_ROOT, else `<project>/artifacts`.

    A relative value is taken from the project folder, so every task process, whatever its
    working directory, resolves the same root.
    """
    return PROJECT_ROOT / (os.environ.get(ARTIFACT_ROOT_ENV) or "artifacts")


def safe_run_id(run_id: str) -> str:
    """A run id usable as one folder name on any filesystem or object store."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")
    if not cleaned:
        raise ValueError(f"`run_id` must contain a letter or digit. Received: run_id={run_id!r}")
    return cleaned


def run_dir(pipeline: str, run_id: str, *, root: Path | None = None) -> Path:
    """`<root>/<pipeline>/runs/<run_id>`, the one folder a run writes to."""
    return (root or artifact_root()) / pipeline / "runs" / safe_run_id(run_id)


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps `path`'s suffix, so writers that check it (Keras' `.keras`) work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)  # mkstemp makes 0600; artifacts are read by other workers and users
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True)
    return write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ArtifactError(f"missing artifact {path}; rerun the task that writes it") from err


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path | datetime):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def library_versions() -> dict[str, str]:
    """Python, platform and the versions of the numeric libraries this process has loaded."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    loaded = {"tensorflow-cpu": "tensorflow", "tensorflow": "tensorflow", "scikit-learn": "sklearn"}
    for dist in _TRACKED:
        module = loaded.get(dist, dist)
        if module not in sys.modules:
            continue
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def describe(path: Path, *, base: Path | None = None) -> dict[str, Any]:
    """Path, size and sha256 of one file; the path is relative to `base` when the file lies
    under it (a step's own outputs), else absolute (a source file, another step's output)."""
    path = Path(path).absolute()  # later tasks may run in another working directory
    shown = path
    if base is not None and path.is_relative_to(Path(base).absolute()):
        shown = path.relative_to(Path(base).absolute())
    return {"path": str(shown), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(
    step_dir: Path,
    *,
    step: str,
    inputs: Mapping[str, Path] | None = None,
    outputs: Mapping[str, Path],
    params: Mapping[str, Any] | None = None,
    shapes: Mapping[str, Any] | None = None,
) -> Path:
    """Write `<step_dir>/manifest.json` last: every input and output with its sha256."""
    manifest = {
        "step": step,
        "inputs": {k: describe(v) for k, v in (inputs or {}).items()},
        # Outputs relative to the step folder: the folder can move (a bundle renamed into the
        # registry, a copied artifact tree, another mount point) and still check out.
        "outputs": {k: describe(v, base=Path(step_dir)) for k, v in outputs.items()},
        "params": dict(params or {}),
        "shapes": dict(shapes or {}),
        "versions": library_versions(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return write_json(Path(step_dir) / MANIFEST, manifest)


def read_manifest(step_dir: Path, *, verify: bool = True) -> dict[str, Any]:
    """Read a finished step's manifest, output paths made absolute; with `verify`, check each
    output's sha256.

    Raises:
        ArtifactError: the step has no manifest (unfinished) or a file changed since it was written.
    """
    path = Path(step_dir) / MANIFEST
    if not path.exists():
        raise ArtifactError(
            f"{step_dir} has no {MANIFEST}: its task did not finish. Rerun that task first."
        )
    manifest = read_json(path)
    for entry in manifest["outputs"].values():  # relative paths are the step folder's
        entry["path"] = str(Path(step_dir).absolute() / entry["path"])
    if verify:
        for name, entry in manifest["outputs"].items():
            verify_file(Path(entry["path"]), entry["sha256"], what=f"{manifest['step']}.{name}")
    return manifest


def verify_file(path: Path, sha256: str, *, what: str) -> Path:
    """Check that `path` exists and has the recorded sha256."""
    if not Path(path).exists():
        raise ArtifactError(f"{what}: {path} is missing; rerun the task that writes it")
    actual = sha256_file(path)
    if actual != sha256:
        raise ArtifactError(
            f"{what}: {path} has sha256 {actual[:12]}..., its manifest says {sha256[:12]}...; "
            "the file changed after it was written. Rerun the task that writes it."
        )
    return Path(path)


def output_path(step_dir: Path, name: str, *, verify: bool = True) -> Path:
    """The path of output `name` of a finished step, checked against its manifest."""
    manifest = read_manifest(step_dir, verify=False)
    try:
        entry = manifest["outputs"][name]
    except KeyError:
        raise ArtifactError(
            f"{step_dir}: manifest lists no output {name!r}; it has {sorted(manifest['outputs'])}"
        ) from None
    path = Path(entry["path"])
    return verify_file(path, entry["sha256"], what=f"{manifest['step']}.{name}") if verify else path


def reset_dir(path: Path) -> Path:
    """Empty a step folder before a (re)run writes it, so no stale file survives."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def step_output(path: Path) -> Iterator[Path]:
    """An empty folder for one step's outputs; removed again if the step fails, so a failed step
    leaves nothing half-written behind (and no manifest, so nothing downstream trusts it)."""
    path = reset_dir(path)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
