"""The artifact store over a URL: publish with the manifest last, fetch only what it lists.

Every test runs twice: against a real S3 protocol server on loopback (moto's server mode, reached
through s3fs over HTTP) and against a `file://` URL, which takes the same code path through
fsspec. Two "workers" are two working copies (FRESHCAST_CACHE_DIR) of one store.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from freshcast import artifacts
from freshcast.artifacts import ArtifactError, read_manifest, write_manifest
from freshcast.registry import Registry, describe


@pytest.fixture(params=["s3", "file"])
def root(request, tmp_path, monkeypatch) -> str:
    url = (
        request.getfixturevalue("s3_root")
        if request.param == "s3"
        else (tmp_path / "store").as_uri()
    )
    monkeypatch.setenv(artifacts.ARTIFACT_ROOT_ENV, url)
    return url


@pytest.fixture
def worker(tmp_path, monkeypatch):
    """Switch this process to another worker: its own, initially empty, working copy."""

    def switch(name: str) -> artifacts.Store:
        monkeypatch.setenv(artifacts.CACHE_DIR_ENV, str(tmp_path / "workers" / name))
        return artifacts.store()

    return switch


def write_step(folder: Path, **files: str) -> Path:
    """One finished step: its files, then its manifest."""
    with artifacts.step_output(folder) as out:
        outputs = {}
        for name, text in files.items():
            outputs[name] = out / f"{name}.txt"
            outputs[name].write_text(text)
        write_manifest(out, step=folder.name, outputs=outputs)
    return folder


@contextlib.contextmanager
def lost_before_the_manifest(monkeypatch):
    """The worker dies after uploading a folder's files, before its manifest."""
    real_put = artifacts.Store._put

    def crash_at_the_manifest(self, path):
        if path.name == artifacts.MANIFEST:
            raise ConnectionError("worker lost")
        real_put(self, path)

    with monkeypatch.context() as patch:
        patch.setattr(artifacts.Store, "_put", crash_at_the_manifest)
        with pytest.raises(ConnectionError):
            yield


def remote(store: artifacts.Store, path: Path) -> str:
    return store._remote(path)


def test_a_step_written_on_one_worker_is_read_on_another(root, worker):
    a = worker("a")
    assert a.remote and a.local == Path(a.local)
    step = write_step(artifacts.run_dir("p", "run 1") / "window", layout="{}", data="x" * 1000)

    b = worker("b")
    here = b.local / step.relative_to(a.local)
    assert not here.exists()
    manifest = read_manifest(here)  # fetched, then every sha256 checked
    assert (here / "data.txt").read_text() == "x" * 1000
    assert Path(manifest["outputs"]["layout"]["path"]) == here / "layout.txt"
    assert b.where(here) == f"{root}/p/runs/run_1/window"


def test_readers_trust_only_what_a_manifest_lists(root, worker, monkeypatch):
    a = worker("a")
    step = artifacts.run_dir("p", "r") / "train"
    with lost_before_the_manifest(monkeypatch):
        write_step(step, model="weights")
    assert a.fs.exists(remote(a, step / "model.txt"))  # the files got there, the manifest not

    b = worker("b")
    with pytest.raises(ArtifactError, match=r"has no manifest\.json: its task did not finish"):
        read_manifest(b.local / "p/runs/r/train")
    assert not b.published(b.local / "p/runs/r/train")

    # A file the manifest does not list is never downloaded.
    worker("a")
    write_step(step, model="weights")
    a.fs.pipe_file(remote(a, step / "stray.txt"), b"left by someone else")
    worker("b")
    read_manifest(b.local / "p/runs/r/train")
    assert not (b.local / "p/runs/r/train/stray.txt").exists()


def test_a_rerun_withdraws_the_old_manifest_before_it_writes(root, worker):
    a = worker("a")
    step = write_step(artifacts.run_dir("p", "r") / "evaluate", metrics="old")
    with pytest.raises(RuntimeError), artifacts.step_output(step):
        raise RuntimeError("the retry fails half way")
    b = worker("b")
    with pytest.raises(ArtifactError, match="did not finish"):
        read_manifest(b.local / "p/runs/r/evaluate")
    assert a.published(step) is False


def test_a_stale_working_copy_follows_the_store(root, worker):
    worker("a")
    step = write_step(artifacts.run_dir("p", "r") / "gate", decision="refuse")
    b = worker("b")
    mine = b.local / "p/runs/r/gate"
    read_manifest(mine)
    assert (mine / "decision.txt").read_text() == "refuse"

    worker("a")
    write_step(step, decision="promote")  # a retry elsewhere rewrote it
    worker("b")
    read_manifest(mine)
    assert (mine / "decision.txt").read_text() == "promote"


def test_an_object_changed_in_the_store_is_refused(root, worker):
    a = worker("a")
    step = write_step(artifacts.run_dir("p", "r") / "split_scale", scaler='{"mean": 1}')
    a.fs.pipe_file(remote(a, step / "scaler.txt"), b'{"mean": 2}')
    worker("b")
    with pytest.raises(ArtifactError, match="changed after it was written"):
        read_manifest(artifacts.store().local / "p/runs/r/split_scale")


def test_nothing_is_renamed_in_the_store(root, worker, monkeypatch):
    """Object stores cannot rename atomically, so the store must never ask them to."""
    a = worker("a")

    def no_rename(*args, **kwargs):
        raise AssertionError("rename (copy + delete) used on the object store")

    from fsspec.implementations.local import LocalFileSystem

    names = ["mv", "rename", "move", "_mv"]
    if not isinstance(a.fs, LocalFileSystem):  # there, put_file is cp_file from the local disk
        names += ["copy", "cp_file", "_cp_file"]  # an object store's copy: half a rename
    for name in names:
        if hasattr(a.fs, name):
            monkeypatch.setattr(a.fs, name, no_rename)
    registry = Registry("p")
    bundle = add_bundle(registry, a.local / "src", run_id="r1")
    with registry.lock():
        registry.set_champion(bundle, event={"kind": "promoted", "run_id": "r1"})
    assert Registry("p").champion()["version"] == bundle == 1


def add_bundle(registry: Registry, src: Path, *, run_id: str) -> int:
    src.mkdir(parents=True, exist_ok=True)
    model = src / "model.keras"
    model.write_bytes(run_id.encode() * 100)
    with registry.lock():
        meta = {"lineage": {"run_id": run_id}, "model": {"name": "m"}}
        return registry.add_version({"model": model}, meta=meta, run_id=run_id)


def test_the_registry_lives_in_the_store(root, worker):
    a = worker("a")
    registry = Registry("p")
    for n in (1, 2, 3):
        version = add_bundle(registry, a.local / "src", run_id=f"r{n}")
        with registry.lock():
            registry.set_champion(version, event={"kind": "promoted", "run_id": f"r{n}"})
    with registry.lock():
        assert registry.prune(keep=2) == [1]
    registry.start_replay(start="2020-01-01", end="2020-02-01")

    worker("b")  # an empty working copy sees the same registry
    seen = Registry("p")
    assert seen.versions() == [2, 3]
    assert seen.champion()["version"] == 3
    assert [e["seq"] for e in seen.history()] == [1, 2, 3]
    assert seen.active_replay()["start"] == "2020-01-01"
    assert seen.bundle(2)["lineage"]["run_id"] == "r2"  # downloaded, sha256 checked
    assert (seen.bundle_dir(2) / "model.keras").read_bytes() == b"r2" * 100
    assert f"registry of p: {root}/p/registry" in describe(seen)

    # A rollback recorded on b is what a sees.
    with seen.lock():
        seen.set_champion(2, event={"kind": "rolled_back", "run_id": "rb", "reason": "test"})
    seen.end_replay()
    worker("a")
    again = Registry("p")
    assert again.champion()["version"] == 2
    assert again.history()[-1]["kind"] == "rolled_back"
    assert again.active_replay() is None


def test_a_bundle_whose_manifest_never_arrived_is_not_a_version(root, worker, monkeypatch):
    a = worker("a")
    registry = Registry("p")
    assert add_bundle(registry, a.local / "src", run_id="r1") == 1
    with lost_before_the_manifest(monkeypatch):
        add_bundle(registry, a.local / "src", run_id="r2")

    worker("b")
    fresh = Registry("p")
    assert fresh.versions() == [1]
    assert add_bundle(fresh, fresh.store.local / "src", run_id="r3") == 3  # 2 is never reused


def test_forecast_history_is_shared_through_the_store(root, worker):
    import pandas as pd

    from freshcast.forecasts import HISTORY_COLUMNS, append_history, history_path, read_history

    def rows(run_id: str) -> pd.DataFrame:
        return pd.DataFrame({c: [run_id if c == "run_id" else 1] for c in HISTORY_COLUMNS})

    worker("a")
    append_history(history_path("p"), rows("f1"))
    worker("b")
    assert read_history(history_path("p"))["run_id"].tolist() == ["f1"]
    append_history(history_path("p"), rows("f2"))
    worker("a")
    assert sorted(read_history(history_path("p"))["run_id"]) == ["f1", "f2"]


def test_a_folder_root_is_its_own_working_copy(tmp_path, monkeypatch):
    monkeypatch.setenv(artifacts.ARTIFACT_ROOT_ENV, str(tmp_path / "plain"))
    store = artifacts.store()
    assert not store.remote and store.local == tmp_path / "plain"
    step = write_step(artifacts.run_dir("p", "r") / "ingest", spec="{}")
    assert step.parent.parent.parent.parent == tmp_path / "plain"
    assert store.where(step) == str(step)


def test_use_store_takes_a_given_filesystem(tmp_path, monkeypatch):
    import fsspec

    # use_store sets the variable itself; setting it here first lets monkeypatch undo it.
    monkeypatch.setenv(artifacts.ARTIFACT_ROOT_ENV, "elsewhere")
    monkeypatch.setenv(artifacts.CACHE_DIR_ENV, str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    store = artifacts.use_store("memory://bucket/root", fs=fs)
    assert artifacts.store() is store and store.fs is fs
    write_step(artifacts.run_dir("p", "r") / "ingest", spec="{}")
    assert fs.exists("/bucket/root/p/runs/r/ingest/manifest.json")
    assert json.loads(fs.cat_file("/bucket/root/p/runs/r/ingest/manifest.json"))["step"] == "ingest"
