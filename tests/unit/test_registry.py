"""The registry on plain files (no TensorFlow): versions, the atomic champion pointer under
crashes between steps, history, retention and rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from freshcast import artifacts
from freshcast.registry import Registry, RegistryError, describe, rollback
from tests.helpers import bundle_files, bundle_meta, promote

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry("demo", root=tmp_path / "artifacts")


def test_versions_are_numbered_self_contained_and_checked(registry, tmp_path):
    assert registry.versions() == [] and registry.champion() is None
    assert promote(registry, tmp_path, "run1") == 1
    assert promote(registry, tmp_path, "run2") == 2
    assert registry.versions() == [1, 2]
    bundle = registry.bundle(2)
    assert bundle["version"] == 2 and bundle["lineage"]["run_id"] == "run2"
    assert (registry.bundle_dir(2) / "model.keras").read_bytes() == b"model run2"
    # The manifest names files relative to the bundle, so it checks out after the rename.
    manifest = json.loads((registry.bundle_dir(2) / "manifest.json").read_text())
    assert {e["path"] for e in manifest["outputs"].values()} == {
        "model.keras",
        "scaler.json",
        "bundle.json",
    }
    assert registry.champion()["version"] == 2


def test_a_changed_bundle_file_is_refused(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    (registry.bundle_dir(1) / "model.keras").write_bytes(b"tampered")
    with pytest.raises(artifacts.ArtifactError, match="changed after it was written"):
        registry.bundle(1)


def test_a_retried_run_gets_its_version_back(registry, tmp_path):
    with registry.lock():
        first = registry.add_version(
            bundle_files(tmp_path / "a", "a"), meta=bundle_meta("r"), run_id="r"
        )
        again = registry.add_version(
            bundle_files(tmp_path / "a", "a"), meta=bundle_meta("r"), run_id="r"
        )
    assert first == again == 1 and registry.versions() == [1]


def test_crash_while_copying_leaves_no_version(registry, tmp_path, monkeypatch):
    promote(registry, tmp_path, "run1")
    files = bundle_files(tmp_path / "run2", "run2")
    files["missing"] = tmp_path / "no-such-file"
    with pytest.raises(FileNotFoundError), registry.lock():
        registry.add_version(files, meta=bundle_meta("run2"), run_id="run2")
    assert registry.versions() == [1]
    assert list(registry.versions_dir.glob(".tmp-*")) == []
    assert registry.champion()["version"] == 1


def test_crash_between_bundle_and_pointer_keeps_the_champion(registry, tmp_path):
    promote(registry, tmp_path, "run1")

    def failing_check(path):
        raise RegistryError("the bundle failed its check in a fresh process")

    with pytest.raises(RegistryError):
        promote(registry, tmp_path, "run2", verify=failing_check)
    assert registry.champion()["version"] == 1  # the pointer never moved
    assert registry.versions() == [1, 2]  # the bundle is kept for inspection, not served
    assert [e["kind"] for e in registry.history()] == ["promoted"]
    # The retry finds run2's bundle instead of adding a third.
    assert promote(registry, tmp_path, "run2") == 2
    assert registry.champion()["version"] == 2


def test_crash_while_writing_the_pointer_leaves_the_old_one(registry, tmp_path, monkeypatch):
    promote(registry, tmp_path, "run1")
    before = (registry.dir / "champion.json").read_bytes()
    real_replace = os.replace

    def crash_on_pointer(src, dst):
        if Path(dst).name == "champion.json":
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", crash_on_pointer)
    with pytest.raises(OSError, match="disk full"):
        promote(registry, tmp_path, "run2")
    assert (registry.dir / "champion.json").read_bytes() == before
    assert registry.champion()["version"] == 1
    assert [p.name for p in registry.dir.iterdir() if p.name.startswith(".champion")] == []


def test_crash_between_pointer_and_history_loses_no_event(registry, tmp_path, monkeypatch):
    promote(registry, tmp_path, "run1")
    monkeypatch.setattr(Registry, "_write_event", lambda self, event: None)  # the crash
    promote(registry, tmp_path, "run2")
    monkeypatch.undo()
    assert not (registry.history_dir / "000002.json").exists()
    assert [e["version"] for e in registry.history()] == [1, 2]  # the pointer carries it
    with registry.lock():
        registry.record("refused", run_id="run3")
    assert (registry.history_dir / "000002.json").exists()  # written back before the next
    assert [e["seq"] for e in registry.history()] == [1, 2, 3]


def test_a_killed_process_leaves_a_consistent_registry(registry, tmp_path):
    """A real crash: the process dies (os._exit) after storing the bundle, before the pointer."""
    promote(registry, tmp_path, "run1")
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from freshcast.registry import Registry
        from tests.helpers import promote
        registry = Registry("demo", root=Path({str(registry.dir.parents[1])!r}))
        promote(registry, Path({str(tmp_path)!r}), "run2", verify=lambda path: os._exit(9))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert registry.champion()["version"] == 1
    assert registry.bundle(1)["lineage"]["run_id"] == "run1"
    assert promote(registry, tmp_path, "run3") == 3  # numbering moves on; 2 is never reused


def test_retention_keeps_the_newest_and_always_the_champion(registry, tmp_path):
    for i in range(1, 5):
        promote(registry, tmp_path, f"run{i}")
    rollback(registry, 1, run_id="rb", reason="v4 misbehaves", verify=lambda p: {"ok": True})
    with registry.lock():
        assert registry.prune(2) == [2]  # keep v3, v4 and the champion v1
    assert registry.versions() == [1, 3, 4]
    assert registry.champion()["version"] == 1


def test_rollback_moves_the_pointer_and_is_recorded(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    promote(registry, tmp_path, "run2")
    checked = []
    pointer = rollback(
        registry,
        1,
        run_id="manual__rb",
        reason="v2 drifts",
        verify=lambda path: checked.append(path) or {"samples": 4},
    )
    assert checked == [registry.bundle_dir(1)]  # checked before the pointer moved
    assert pointer["version"] == 1 and registry.champion()["version"] == 1
    event = registry.history()[-1]
    assert event["kind"] == "rolled_back"
    assert (event["from_version"], event["version"], event["reason"]) == (2, 1, "v2 drifts")
    assert event["run_id"] == "manual__rb" and event["verified"] == {"samples": 4}
    text = describe(registry)
    assert "champion: v1" in text and "rolled_back" in text and "v2 -> v1: v2 drifts" in text


def test_rollback_to_an_unknown_version_names_the_known_ones(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    with pytest.raises(RegistryError, match=r"has no version 7; it has \[1\]"):
        rollback(registry, 7, run_id="rb", reason="x", verify=lambda p: {})
    assert registry.champion()["version"] == 1


def test_rollback_refuses_a_tampered_bundle(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    promote(registry, tmp_path, "run2")
    (registry.bundle_dir(1) / "scaler.json").write_text("{}")
    with pytest.raises(artifacts.ArtifactError):
        rollback(registry, 1, run_id="rb", reason="x", verify=lambda p: {})
    assert registry.champion()["version"] == 2


def test_last_decision_and_find_event(registry, tmp_path):
    assert registry.last_decision() is None
    promote(registry, tmp_path, "run1")
    with registry.lock():
        registry.record("refused", run_id="run2", fingerprint={"data_sha256": "x"})
    rollback(registry, 1, run_id="rb", reason="x", verify=lambda p: {})
    assert registry.last_decision()["run_id"] == "run2"  # a rollback is not a training decision
    assert registry.find_event(run_id="run1", kinds=("promoted",))["version"] == 1
    assert registry.find_event(run_id="run2", kinds=("promoted",)) is None


def test_replay_marker_is_active_until_ended_or_expired(registry):
    assert registry.active_replay() is None
    registry.start_replay(start="2015-01-01", end="2016-02-01")
    assert registry.active_replay()["start"] == "2015-01-01"
    registry.end_replay()
    assert registry.active_replay() is None
    registry.start_replay(start="2015-01-01", end="2016-02-01", hours=-1)  # a crashed replay
    assert registry.active_replay() is None


# --- the registry heals itself from its history -----------------------------------------------


def heal(registry: Registry) -> dict:
    with registry.lock():
        return registry.heal(run_id="healer")


def kinds(registry: Registry) -> list[str]:
    return [e["kind"] for e in registry.history()]


def test_a_lost_pointer_is_rebuilt_from_the_history(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    promote(registry, tmp_path, "run2")
    (registry.dir / "champion.json").unlink()
    assert registry.champion() is None
    text = describe(registry)  # read only: shows the champion the history names and the problem
    assert "champion: v2" in text and "per the history" in text
    assert "champion.json is missing; the history says v2" in text
    assert "champion: none" not in text

    healed = heal(registry)
    assert healed["version"] == 2 and healed["problem"] is None
    assert registry.champion()["version"] == 2
    assert registry.champion()["event"]["kind"] == "promoted"  # the original event, not a new one
    assert kinds(registry) == ["promoted", "promoted", "repaired"]
    assert "rebuilt it from event #2: v2" in registry.history()[-1]["actions"][0]
    assert heal(registry)["actions"] == [] and len(registry.history()) == 3  # healthy: no-op


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        '{"version": 1, "event": {"seq": 1, "version": 2}}',  # disagrees with itself
        '{"version": 9}',
    ],
)
def test_a_damaged_pointer_is_rebuilt_from_the_history(registry, tmp_path, damage):
    promote(registry, tmp_path, "run1")
    promote(registry, tmp_path, "run2")
    (registry.dir / "champion.json").write_text(damage)
    assert any("champion.json is damaged" in p for p in registry.problems())
    assert heal(registry)["version"] == 2
    assert registry.champion()["version"] == 2 and registry.problems() == []


def test_an_older_pointer_gives_way_to_the_history(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    old = (registry.dir / "champion.json").read_text()
    promote(registry, tmp_path, "run2")
    (registry.dir / "champion.json").write_text(old)  # e.g. restored from an old backup
    assert heal(registry)["version"] == 2 and registry.champion()["version"] == 2


def test_a_damaged_champion_is_reported_once_and_the_last_good_one_serves(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    promote(registry, tmp_path, "run2")
    promote(registry, tmp_path, "run3")
    rollback(registry, 2, run_id="rb", reason="v3 drifts", verify=lambda p: {})
    (registry.bundle_dir(2) / "model.keras").write_bytes(b"flipped")
    assert "champion v2 fails its check" in describe(registry)

    healed = heal(registry)
    # v3 was champion before v2 came back, and its files verify: the newest earlier champion.
    assert healed["version"] == 3 and healed["problem"] is None
    assert healed["actions"][0].startswith("champion v2 fails its check")
    assert healed["actions"][-1] == "serving v3 instead"
    damaged, restored = registry.history()[-2:]
    assert damaged["kind"] == "damaged" and damaged["version"] == 2
    assert restored["kind"] == "restored" and (restored["from_version"], restored["version"]) == (
        2,
        3,
    )
    assert registry.champion()["version"] == 3
    before = len(registry.history())
    assert heal(registry)["actions"] == [] and len(registry.history()) == before


def test_with_no_version_left_heal_says_what_to_do_once(registry, tmp_path):
    promote(registry, tmp_path, "run1")
    (registry.bundle_dir(1) / "model.keras").write_bytes(b"flipped")
    healed = heal(registry)
    assert healed["version"] is None
    assert (
        'conf {"force": true}' in healed["problem"] and "registry check demo" in healed["problem"]
    )
    assert heal(registry)["problem"] == healed["problem"]
    assert kinds(registry) == ["promoted", "damaged"]  # reported once, not at every read
    # The pointer is left as it is: the history still names v1, and nothing pretends otherwise.
    assert registry.champion()["version"] == 1


def test_prune_keeps_the_historys_champion_when_the_pointer_is_lost(registry, tmp_path):
    for i in range(1, 4):
        promote(registry, tmp_path, f"run{i}")
    rollback(registry, 1, run_id="rb", reason="x", verify=lambda p: {})
    (registry.dir / "champion.json").unlink()
    with registry.lock():
        assert registry.prune(1) == [2]
    assert 1 in registry.versions()


def test_a_rollback_from_no_champion_says_so(registry, tmp_path):
    with registry.lock():
        version = registry.add_version(
            bundle_files(tmp_path / "r", "r"), meta=bundle_meta("r"), run_id="r"
        )
    rollback(registry, version, run_id="rb", reason="first serve", verify=lambda p: {})
    assert "no champion -> v1: first serve" in describe(registry)
    assert "vNone" not in describe(registry)


def test_check_verifies_every_bundle_and_repairs(registry, tmp_path, capsys, monkeypatch):
    from freshcast import registry as registry_module

    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    promote(registry, tmp_path, "run1")
    promote(registry, tmp_path, "run2")
    (registry.bundle_dir(2) / "scaler.json").write_text("{}")
    (registry.dir / "champion.json").unlink()
    (registry.versions_dir / ".tmp-crashed").mkdir()
    assert registry_module.main(["check", "demo"]) == 0
    out = capsys.readouterr().out
    assert "v1: files verify" in out and "v2: FAILS" in out and "scaler" in out
    assert "history: 2 event(s), contiguous" in out
    assert "repairs:\n  champion v2 fails its check" in out and "\n  serving v1 instead" in out
    assert "Rerun the task" not in out  # advice for run folders, not for stored versions
    assert "removed 1 unfinished bundle folder(s)" in out
    assert "champion: v1 (files verify)" in out
    assert not (registry.versions_dir / ".tmp-crashed").exists()

    (registry.bundle_dir(1) / "model.keras").write_bytes(b"flipped")
    assert registry_module.main(["check", "demo"]) == 1  # nothing left to serve: says so
    assert "NOT REPAIRED" in capsys.readouterr().out


def test_check_names_gaps_in_the_history(registry, tmp_path, capsys, monkeypatch):
    from freshcast import registry as registry_module

    monkeypatch.setenv("FRESHCAST_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    for i in range(1, 4):
        promote(registry, tmp_path, f"run{i}")
    (registry.history_dir / "000002.json").write_text("garbage")
    registry_module.main(["check", "demo"])
    assert "missing or unreadable: #2" in capsys.readouterr().out


def test_a_full_disk_during_promote_keeps_the_old_champion(registry, tmp_path, monkeypatch):
    import errno
    import shutil

    promote(registry, tmp_path, "run1")
    real_copy = shutil.copyfile

    def disk_full(src, dst, *args, **kwargs):
        if Path(src).name == "scaler.json":  # the model was copied; then the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(OSError, match="No space left"):
        promote(registry, tmp_path, "run2")
    monkeypatch.undo()
    assert registry.champion()["version"] == 1 and registry.versions() == [1]
    assert registry.bundle(1)["lineage"]["run_id"] == "run1"  # every file still verifies
    assert [p.name for p in registry.versions_dir.iterdir()] == ["v0001"]  # no half bundle
    assert [e["kind"] for e in registry.history()] == ["promoted"]
    assert promote(registry, tmp_path, "run2") == 2  # once there is room, the retry succeeds
