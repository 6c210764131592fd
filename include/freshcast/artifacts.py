"""The artifact store: run-scoped paths, atomic writes, checksums and manifests.

Layout: `<root>/<pipeline>/runs/<run_id>/<step>/...`; each step writes its files first and its
`manifest.json` last, so a step folder without a manifest is unfinished and is never read.

The root is a local folder or a URL (`file://`, `s3://`, any fsspec protocol); see `Store`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from freshcast.errors import PermanentError

ARTIFACT_ROOT_ENV = "FRESHCAST_ARTIFACT_ROOT"
# The Airflow connection that reaches a URL root (credentials, endpoint); see `use_url_store`.
STORAGE_CONN_ENV = "FRESHCAST_STORAGE_CONN_ID"
CACHE_DIR_ENV = "FRESHCAST_CACHE_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "manifest.json"
# Versions recorded in every manifest; tensorflow/keras only when the step loaded them.
_TRACKED = ("numpy", "pandas", "pyarrow", "scikit-learn", "keras", "tensorflow-cpu", "tensorflow")


class ArtifactError(RuntimeError):
    """An artifact is missing, unfinished or does not match its manifest."""


class DamagedArtifactError(ArtifactError, PermanentError):
    """A file no longer matches the sha256 its manifest recorded: retrying cannot change it."""


def artifact_root() -> Path:
    """The local root that tasks read and write: the store's working copy (see `Store`).

    That is FRESHCAST_ARTIFACT_ROOT itself when it is a folder (default `<project>/artifacts`;
    a relative value is taken from the project folder, so every task process, whatever its
    working directory, resolves the same root), or a local cache of it when it is a URL.
    """
    return store().local


def is_url(root: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", root))


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
    """Write `obj` as strict JSON, keys sorted, atomically.

    Raises:
        ValueError: `obj` holds a NaN or inf (numpy's too), named by its place; nothing is
            written. JSON has no such numbers: the producer writes None for "no value".
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    except ValueError as err:
        if (where := _non_finite(obj)) is None:
            raise
        raise ValueError(
            f"{path}: {where[0] or 'the value'} is {where[1]}, which strict JSON cannot hold; "
            "write None for a value that does not exist"
        ) from err
    return write_bytes(path, (text + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ArtifactError(f"missing artifact {path}; rerun the task that writes it") from err


def _json_default(obj: Any) -> Any:
    # A numpy NaN comes back as a float NaN, refused like any other (np.float64 is a float).
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    if isinstance(obj, Path | datetime):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _non_finite(obj: Any, at: str = "") -> tuple[str, float] | None:
    """(where, value) of the first NaN or inf in `obj`, e.g. ("scores.lstm.mae", nan)."""
    if hasattr(obj, "tolist"):  # numpy, as `_json_default` writes it
        obj = obj.tolist()
    if isinstance(obj, Mapping):
        items = [(f"{at}.{k}" if at else str(k), v) for k, v in obj.items()]
    elif isinstance(obj, list | tuple):
        items = [(f"{at}[{i}]", v) for i, v in enumerate(obj)]
    else:
        return (at, obj) if isinstance(obj, float) and not math.isfinite(obj) else None
    return next((found for key, v in items if (found := _non_finite(v, key))), None)


def library_versions() -> dict[str, str]:
    """Python, platform and the versions of the numeric libraries this process has loaded.

    Cheap enough for every manifest: loaded modules report their own `__version__`, and the
    slower package-metadata lookup is left to TensorFlow (whose module does not say which of
    its distributions is installed) and done once per process.
    """
    versions = {"python": platform.python_version(), "platform": _platform()}
    loaded = {"tensorflow-cpu": "tensorflow", "tensorflow": "tensorflow", "scikit-learn": "sklearn"}
    for dist in _TRACKED:
        module = loaded.get(dist, dist)
        if module in sys.modules and (version := _version(dist, module)):
            versions[dist] = version
    return versions


def _platform() -> str:
    uname = platform.uname()  # cached by the platform module, unlike platform.platform()
    return f"{uname.system}-{uname.release}-{uname.machine}"


@functools.cache
def _version(dist: str, module: str) -> str | None:
    if not dist.startswith("tensorflow"):
        version = getattr(sys.modules[module], "__version__", None)
        if version:
            return str(version)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


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
    inputs: Mapping[str, Path | Mapping[str, Any]] | None = None,
    outputs: Mapping[str, Path],
    params: Mapping[str, Any] | None = None,
    shapes: Mapping[str, Any] | None = None,
) -> Path:
    """Write `<step_dir>/manifest.json` last: every input and output with its sha256.

    An input is a path (hashed here) or an entry that `recorded` read from its producer's
    manifest (not hashed again).
    """
    manifest = {
        "step": step,
        "inputs": {
            k: dict(v) if isinstance(v, Mapping) else describe(v) for k, v in (inputs or {}).items()
        },
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
    store().fetch(Path(step_dir))
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
        raise DamagedArtifactError(
            f"{what}: {path} has sha256 {actual[:12]}..., its manifest says {sha256[:12]}...; "
            "the file changed after it was written. Rerun the task that writes it."
        )
    return Path(path)


def output_path(step_dir: Path, name: str, *, verify: bool = True) -> Path:
    """The path of output `name` of a finished step, checked against its manifest."""
    step, entry = _output_entry(step_dir, name)
    path = Path(entry["path"])
    return verify_file(path, entry["sha256"], what=f"{step}.{name}") if verify else path


def recorded(step_dir: Path, name: str) -> dict[str, Any]:
    """Output `name` of a finished step as its manifest records it (path, bytes, sha256),
    without reading the file: what a consumer lists as its input, since the producer hashed it
    and the consumer checks it (`output_path`) when it reads the values."""
    return dict(_output_entry(step_dir, name)[1])


def _output_entry(step_dir: Path, name: str) -> tuple[str, dict[str, Any]]:
    manifest = read_manifest(step_dir, verify=False)
    try:
        return manifest["step"], manifest["outputs"][name]
    except KeyError:
        raise ArtifactError(
            f"{step_dir}: manifest lists no output {name!r}; it has {sorted(manifest['outputs'])}"
        ) from None


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
    leaves nothing half-written behind (and no manifest, so nothing downstream trusts it).

    In a store with a URL root the folder is published when the block succeeds (its old
    manifest is withdrawn first, so a retry's readers never trust a half-replaced folder).
    """
    current = store()
    current.withdraw(Path(path))
    path = reset_dir(path)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    current.publish(path)


# ------------------------------------------------------------------------------- the store


class Store:
    """Where finished artifacts are kept, for every worker to read.

    Tasks always read and write a local working copy, `local`: Keras, numpy's memory maps and
    Parquet want real files. The root decides what happens next:

    - a folder (the default): it is its own working copy, every worker sees it (one machine, or
      a shared volume), and `publish`/`fetch` have nothing to do;
    - a URL (`s3://bucket/prefix`, `file:///srv/store`, any fsspec protocol): `local` is a cache
      (`FRESHCAST_CACHE_DIR`, default `<project>/.freshcast-cache/<url>`), and each finished
      folder is published to the store and fetched from it by the next task, wherever it runs.

    Object stores cannot rename atomically (a rename is a copy and a delete), so nothing here
    renames in the store. A folder is published by withdrawing its old manifest, uploading its
    files, and uploading its manifest last; a reader reads the manifest first and downloads only
    the files it lists, each checked against its sha256. A folder without a manifest is
    unfinished and is never read. Single small files (the registry's pointer and events, the
    forecast history) are one PUT each, which an object store applies whole or not at all.

    Args:
        root: the folder or URL.
        fs: an fsspec filesystem for the URL (the DAGs pass the one Airflow's ObjectStoragePath
            builds from a connection); default: fsspec's own for the URL's protocol.
        cache: the working copy of a URL root.
    """

    def __init__(self, root: str | Path, *, fs: Any = None, cache: Path | None = None) -> None:
        root = str(root)
        self.url = root
        if not is_url(root):
            self.local = PROJECT_ROOT / root
            self.fs, self.base = None, None
            return
        if fs is None:
            import fsspec

            fs, base = fsspec.core.url_to_fs(root)
        else:
            base = fs._strip_protocol(root)
        self.fs, self.base = fs, base.rstrip("/")
        default = PROJECT_ROOT / ".freshcast-cache" / re.sub(r"[^A-Za-z0-9._-]+", "_", root)
        self.local = Path(cache or os.environ.get(CACHE_DIR_ENV) or default)

    def __repr__(self) -> str:
        return f"Store({self.url!r}, local={str(self.local)!r})"

    @property
    def remote(self) -> bool:
        """Whether the store is apart from its working copy (a URL root)."""
        return self.fs is not None

    def where(self, path: Path) -> str:
        """Where `path` of the working copy lives in the store (a URL, or the path itself)."""
        return f"{self.url.rstrip('/')}/{self._key(path)}" if self.remote else str(path)

    def local_path(self, location: str | Path) -> Path:
        """The working-copy path of a location `where` gave (a URL in the store, or a path)."""
        prefix = self.url.rstrip("/") + "/"
        if self.remote and str(location).startswith(prefix):
            return self.local / str(location)[len(prefix) :]
        return Path(location)

    def _key(self, path: Path) -> str:
        try:
            return Path(path).absolute().relative_to(self.local.absolute()).as_posix()
        except ValueError:
            raise ArtifactError(
                f"{path} is outside the artifact store's working copy {self.local}"
            ) from None

    def _remote(self, path: Path) -> str:
        key = self._key(path)
        return f"{self.base}/{key}" if key != "." else self.base

    # -------------------------------------------------------------------- folders of a step

    def published(self, folder: Path) -> bool:
        """Whether `folder` is finished in the store (its manifest is there)."""
        if not self.remote:
            return (Path(folder) / MANIFEST).exists()
        return self._exists(self._remote(Path(folder) / MANIFEST))

    def withdraw(self, folder: Path) -> None:
        """Stop readers trusting `folder` before it is rewritten: delete its manifest."""
        if self.remote:  # NotADirectoryError: `folder` is a file (a local filesystem says so)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self.fs.rm_file(self._remote(Path(folder) / MANIFEST))

    def publish(self, folder: Path) -> None:
        """Upload a finished folder: every file, then the manifest last."""
        if not self.remote:
            return
        folder = Path(folder)
        self.withdraw(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
        for path in files:
            if not path.name.startswith("."):  # temporary files of an atomic write
                self._put(path)
        if (folder / MANIFEST).exists():
            self._put(folder / MANIFEST)

    def fetch(self, folder: Path) -> None:
        """Bring a published folder into the working copy: read its manifest in the store,
        download each file it lists whose local copy differs, write the manifest last.

        Nothing happens when the store has no manifest there (the reader then reports the
        folder as unfinished) or when the local copy already matches it.
        """
        if not self.remote:
            return
        folder = Path(folder)
        try:
            manifest = self.fs.cat_file(self._remote(folder / MANIFEST))
        except FileNotFoundError:
            (folder / MANIFEST).unlink(missing_ok=True)  # withdrawn or never finished
            return
        local = folder / MANIFEST
        if local.exists() and local.read_bytes() == manifest:
            return
        local.unlink(missing_ok=True)
        for entry in json.loads(manifest)["outputs"].values():
            path = folder / entry["path"]
            if path.exists() and sha256_file(path) == entry["sha256"]:
                continue
            with atomic_path(path) as tmp:
                self.fs.get_file(self._remote(path), str(tmp))
        write_bytes(local, manifest)

    # -------------------------------------------------------------------- single files

    def put(self, path: Path) -> None:
        """Upload one file of the working copy (one PUT, whole or not at all)."""
        if self.remote:
            self._put(Path(path))

    def get(self, path: Path) -> bool:
        """Refresh one file of the working copy from the store; False (and no local copy) when
        the store has none."""
        path = Path(path)
        if not self.remote:
            return path.exists()
        try:
            data = self.fs.cat_file(self._remote(path))
        except FileNotFoundError:
            path.unlink(missing_ok=True)
            return False
        if not path.exists() or path.read_bytes() != data:
            write_bytes(path, data)
        return True

    def names(self, folder: Path) -> list[str]:
        """Names of the files and folders directly in `folder`, in the store."""
        folder = Path(folder)
        if not self.remote:
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        remote = self._remote(folder)
        self.fs.invalidate_cache(remote)
        try:
            entries = self.fs.ls(remote, detail=False)
        except FileNotFoundError:
            return []
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in entries} - {""})

    def remove(self, path: Path) -> None:
        """Delete a file or folder in the store and the working copy; a folder loses its
        manifest first, so it is never seen half-deleted."""
        path = Path(path)
        if self.remote:
            self.withdraw(path)
            remote = self._remote(path)
            self.fs.invalidate_cache(remote)
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(remote, recursive=True)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    # -------------------------------------------------------------------- internals

    def _put(self, path: Path) -> None:
        remote = self._remote(path)
        self.fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)  # local filesystems need it
        self.fs.put_file(str(path), remote)

    def _exists(self, remote: str) -> bool:
        self.fs.invalidate_cache(remote.rsplit("/", 1)[0])
        return bool(self.fs.exists(remote))


def where(path: Path) -> str:
    """Where a file or folder of the working copy is kept: what tasks pass on in XCom, the
    same for every worker (a URL in a URL store)."""
    return store().where(path)


def local(location: str | Path) -> Path:
    """This worker's working-copy path of a location from `where`."""
    return store().local_path(location)


_stores: dict[tuple[str, str | None], Store] = {}


def store() -> Store:
    """The store named by FRESHCAST_ARTIFACT_ROOT (and FRESHCAST_CACHE_DIR), one per process;
    `use_store` sets one built elsewhere (a DAG's ObjectStoragePath filesystem)."""
    key = (os.environ.get(ARTIFACT_ROOT_ENV) or "artifacts", os.environ.get(CACHE_DIR_ENV))
    if key not in _stores:
        _stores[key] = Store(key[0])
    return _stores[key]


def use_store(root: str, *, fs: Any) -> Store:
    """Make `root`, reached through the fsspec filesystem `fs`, this process's store; it is
    used while FRESHCAST_ARTIFACT_ROOT names the same root."""
    os.environ[ARTIFACT_ROOT_ENV] = root
    key = (root, os.environ.get(CACHE_DIR_ENV))
    _stores[key] = Store(root, fs=fs)
    return _stores[key]


def use_url_store(make_path: Callable[[str, str | None], Any]) -> Store:
    """This process's store, its filesystem built by `make_path(root, conn_id)` when the root is
    a URL: the DAGs and the UI plugin pass Airflow's `ObjectStoragePath`, so credentials and
    endpoint come from the Airflow connection named by FRESHCAST_STORAGE_CONN_ID (none: the
    filesystem's own defaults, e.g. the AWS environment variables). A folder root needs none.
    """
    root = os.environ.get(ARTIFACT_ROOT_ENV, "")
    if not is_url(root):
        return store()
    return use_store(root, fs=make_path(root, os.environ.get(STORAGE_CONN_ENV) or None).fs)
