from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from freshcast import artifacts
from freshcast.artifacts import (
    ARTIFACT_ROOT_ENV,
    MANIFEST,
    ArtifactError,
    atomic_path,
    output_path,
    read_json,
    read_manifest,
    reset_dir,
    run_dir,
    safe_run_id,
    sha256_file,
    write_json,
    write_manifest,
)

RUN_ID = "manual__2026-11-22T11:22:09.085644+00:00"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _step(tmp_path: Path) -> tuple[Path, dict[str, Path], dict[str, Path]]:
    """A finished-looking step folder: two outputs and one input from another step."""
    step_dir = tmp_path / "run" / "split_scale"
    step_dir.mkdir(parents=True)
    (tmp_path / "run" / "validate").mkdir()
    source = tmp_path / "run" / "validate" / "series.parquet"
    source.write_bytes(b"series bytes")
    scaled = step_dir / "scaled.npy"
    scaled.write_bytes(bytes(range(256)) * 10)
    scaler = step_dir / "scaler.json"
    scaler.write_text('{"kind": "minmax"}\n')
    return step_dir, {"series": source}, {"scaled": scaled, "scaler": scaler}


# ---------------------------------------------------------------- run ids and layout


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        (RUN_ID, "manual__2026-11-22T11_22_09.085644_00_00"),
        ("scheduled__2026-01-05T00:00:00+00:00", "scheduled__2026-01-05T00_00_00_00_00"),
        (
            "asset_triggered__2026-03-01T06:30:00+00:00",
            "asset_triggered__2026-03-01T06_30_00_00_00",
        ),
        ("already-safe_1.0", "already-safe_1.0"),
        ("a b/c\\d", "a_b_c_d"),
        ("../../etc/passwd", "etc_passwd"),
        ("__x__", "x"),
    ],
)
def test_safe_run_id(run_id, expected):
    cleaned = safe_run_id(run_id)
    assert cleaned == expected
    assert re.fullmatch(r"[A-Za-z0-9._-]+", cleaned)
    assert cleaned not in {".", ".."}
    assert safe_run_id(cleaned) == cleaned  # idempotent


@pytest.mark.parametrize("run_id", ["", "..", "/", "+:+", "._."])
def test_safe_run_id_needs_a_letter_or_digit(run_id):
    message = f"`run_id` must contain a letter or digit. Received: run_id={run_id!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        safe_run_id(run_id)


def test_run_dir_under_the_artifact_root(monkeypatch, tmp_path):
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path))
    path = run_dir("weather", RUN_ID)
    assert path == tmp_path / "weather" / "runs" / "manual__2026-11-22T11_22_09.085644_00_00"
    assert path.parent.parent.parent == tmp_path


def test_run_dir_explicit_root_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "env"))
    assert run_dir("p", "r1", root=tmp_path / "given") == tmp_path / "given" / "p" / "runs" / "r1"


@pytest.mark.parametrize("value", [None, ""])
def test_run_dir_defaults_to_project_artifacts(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(ARTIFACT_ROOT_ENV, raising=False)
    else:
        monkeypatch.setenv(ARTIFACT_ROOT_ENV, value)
    assert run_dir("p", "r1") == artifacts.PROJECT_ROOT / "artifacts" / "p" / "runs" / "r1"


# ---------------------------------------------------------------- atomic writes


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "deep" / "er" / "model.keras"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent  # same folder, so the rename is atomic
        assert tmp.name.endswith(".keras")  # writers that check the suffix accept it
        assert tmp != target
        assert not target.exists()  # nothing visible before the block succeeds
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.keras"]


def test_atomic_path_replaces_an_existing_target(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_path_failure_leaves_no_target_and_no_temp(tmp_path):
    target = tmp_path / "a.json"
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_the_older_target(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


# ---------------------------------------------------------------- JSON


def test_write_json_read_json_round_trip(tmp_path):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    obj = {
        "b": [1, 2.5, None],
        "a": {"nested": True},
        "np_int": np.int64(3),
        "np_array": np.arange(3),
        "path": tmp_path / "x",
        "when": when,
        "none": None,
    }
    path = write_json(tmp_path / "sub" / "out.json", obj)
    assert path == tmp_path / "sub" / "out.json"
    back = read_json(path)
    assert back["b"] == [1, 2.5, None]
    assert back["a"] == {"nested": True}
    assert back["np_int"] == 3
    assert back["np_array"] == [0, 1, 2]
    assert back["path"] == str(tmp_path / "x")
    assert back["when"] == str(when)
    assert back["none"] is None
    assert list(json.loads(path.read_text())) == sorted(obj)  # keys sorted, stable diffs


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "nan"),
        (math.inf, "inf"),
        (np.float64("nan"), "nan"),  # a float subclass: json sees it directly
        (np.float32("-inf"), "-inf"),  # not one: it goes through _json_default
        (np.array([[1.0], [np.nan]]), "nan"),
    ],
)
def test_write_json_refuses_nan_and_inf_naming_the_place_and_keeps_the_old_file(
    tmp_path, value, shown
):
    path = write_json(tmp_path / "metrics.json", {"ok": 1})
    obj = {"scores": {"lstm": {"kind": "model", "mae": value}}}
    where = "scores.lstm.mae" + ("[1][0]" if isinstance(value, np.ndarray) else "")
    message = f"{path}: {where} is {shown}, which strict JSON cannot hold; write None"
    with pytest.raises(ValueError, match=re.escape(message)):
        write_json(path, obj)
    assert read_json(path) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_write_json_writes_no_value_as_null(tmp_path):
    path = write_json(tmp_path / "out.json", {"mase": None, "list": [np.float32(0.5), None]})
    assert path.read_text() == '{\n  "list": [\n    0.5,\n    null\n  ],\n  "mase": null\n}\n'


def test_write_json_rejects_unknown_objects_and_keeps_the_old_file(tmp_path):
    path = write_json(tmp_path / "out.json", {"ok": 1})
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(path, {"bad": object()})
    assert read_json(path) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_read_json_of_a_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match=r"missing artifact .*nope\.json; rerun the task"):
        read_json(tmp_path / "nope.json")


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    data = bytes(range(256)) * 7 + b"tail"
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == _sha256(data)
    assert sha256_file(path, chunk=7) == _sha256(data)


# ---------------------------------------------------------------- manifests


def test_write_manifest_lists_inputs_and_outputs_with_sha256(tmp_path):
    step_dir, inputs, outputs = _step(tmp_path)
    path = write_manifest(
        step_dir,
        step="split_scale",
        inputs=inputs,
        outputs=outputs,
        params={"scaler": "minmax"},
        shapes={"scaled": [10, 3]},
    )
    assert path == step_dir / MANIFEST
    manifest = read_json(path)
    assert manifest["step"] == "split_scale"
    assert set(manifest["inputs"]) == {"series"}
    assert set(manifest["outputs"]) == {"scaled", "scaler"}
    for section, files in (("inputs", inputs), ("outputs", outputs)):
        for name, file in files.items():
            entry = manifest[section][name]
            data = file.read_bytes()
            # Outputs are named relative to the step folder; inputs (other steps') absolutely.
            shown = file.name if section == "outputs" else str(file)
            assert entry == {"path": shown, "bytes": len(data), "sha256": _sha256(data)}
    assert manifest["params"] == {"scaler": "minmax"}
    assert manifest["shapes"] == {"scaled": [10, 3]}
    assert manifest["versions"]["python"]
    assert manifest["versions"]["numpy"] == np.__version__
    datetime.fromisoformat(manifest["written_at"])
    read = read_manifest(step_dir)  # the same, with output paths made absolute
    assert {k: v["path"] for k, v in read["outputs"].items()} == {
        k: str(v) for k, v in outputs.items()
    }
    assert {k: v for k, v in read.items() if k != "outputs"} == {
        k: v for k, v in manifest.items() if k != "outputs"
    }


def test_write_manifest_is_written_after_every_file_is_hashed(tmp_path, monkeypatch):
    step_dir, inputs, outputs = _step(tmp_path)
    seen = []
    describe = artifacts.describe

    def spy(path, **kwargs):
        seen.append((Path(path).name, (step_dir / MANIFEST).exists()))
        return describe(path, **kwargs)

    monkeypatch.setattr(artifacts, "describe", spy)
    write_manifest(step_dir, step="split_scale", inputs=inputs, outputs=outputs)
    assert sorted(name for name, _ in seen) == ["scaled.npy", "scaler.json", "series.parquet"]
    assert not any(manifest_existed for _, manifest_existed in seen)
    assert (step_dir / MANIFEST).exists()


def test_write_manifest_records_outputs_relative_to_the_step(tmp_path, monkeypatch):
    # Later tasks may run in another working directory, and the folder may move.
    step_dir, _, _ = _step(tmp_path)
    monkeypatch.chdir(step_dir)
    write_manifest(Path("."), step="split_scale", outputs={"scaled": Path("scaled.npy")})
    entry = read_json(step_dir / MANIFEST)["outputs"]["scaled"]
    assert entry["path"] == "scaled.npy"
    monkeypatch.chdir(tmp_path)
    assert read_manifest(step_dir)["outputs"]["scaled"]["path"] == str(step_dir / "scaled.npy")
    assert output_path(step_dir, "scaled") == step_dir / "scaled.npy"


def test_a_moved_step_folder_still_checks_out(tmp_path):
    step_dir, _, _ = _step(tmp_path)
    write_manifest(step_dir, step="split_scale", outputs={"scaled": step_dir / "scaled.npy"})
    moved = step_dir.rename(tmp_path / "elsewhere")
    assert output_path(moved, "scaled") == moved / "scaled.npy"  # sha256 checked there
    (moved / "scaled.npy").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="changed after it was written"):
        output_path(moved, "scaled")


def test_write_manifest_without_inputs(tmp_path):
    step_dir, _, outputs = _step(tmp_path)
    write_manifest(step_dir, step="s", outputs=outputs)
    manifest = read_manifest(step_dir)
    assert manifest["inputs"] == {}
    assert manifest["params"] == {}
    assert manifest["shapes"] == {}


def test_read_manifest_of_an_unfinished_step(tmp_path):
    step_dir, _, _ = _step(tmp_path)  # outputs written, manifest not yet
    with pytest.raises(ArtifactError, match=r"has no manifest\.json: its task did not finish"):
        read_manifest(step_dir)
    with pytest.raises(ArtifactError, match=r"has no manifest\.json"):
        output_path(step_dir, "scaled")


def test_read_manifest_detects_an_output_modified_after_the_manifest(tmp_path):
    step_dir, inputs, outputs = _step(tmp_path)
    write_manifest(step_dir, step="split_scale", inputs=inputs, outputs=outputs)
    outputs["scaler"].write_text('{"kind": "standard"}\n')
    with pytest.raises(
        ArtifactError, match=r"split_scale\.scaler: .* changed after it was written"
    ):
        read_manifest(step_dir)
    assert read_manifest(step_dir, verify=False)["step"] == "split_scale"


def test_read_manifest_detects_a_missing_output(tmp_path):
    step_dir, inputs, outputs = _step(tmp_path)
    write_manifest(step_dir, step="split_scale", inputs=inputs, outputs=outputs)
    outputs["scaled"].unlink()
    with pytest.raises(ArtifactError, match=r"split_scale\.scaled: .*scaled\.npy is missing"):
        read_manifest(step_dir)


def test_output_path(tmp_path):
    step_dir, inputs, outputs = _step(tmp_path)
    write_manifest(step_dir, step="split_scale", inputs=inputs, outputs=outputs)
    assert output_path(step_dir, "scaled") == outputs["scaled"]
    assert output_path(step_dir, "scaler") == outputs["scaler"]
    message = "manifest lists no output 'series'; it has ['scaled', 'scaler']"
    with pytest.raises(ArtifactError, match=re.escape(message)):
        output_path(step_dir, "series")  # an input is not an output


def test_output_path_verifies_only_when_asked(tmp_path):
    step_dir, inputs, outputs = _step(tmp_path)
    write_manifest(step_dir, step="split_scale", inputs=inputs, outputs=outputs)
    outputs["scaled"].write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="changed after it was written"):
        output_path(step_dir, "scaled")
    assert output_path(step_dir, "scaled", verify=False) == outputs["scaled"]
    assert output_path(step_dir, "scaler") == outputs["scaler"]  # untouched output still fine


# ---------------------------------------------------------------- reset_dir


def test_reset_dir_removes_stale_files(tmp_path):
    step_dir, _, _ = _step(tmp_path)
    write_manifest(step_dir, step="s", outputs={})
    (step_dir / "nested").mkdir()
    (step_dir / "nested" / "old.txt").write_text("stale")
    assert reset_dir(step_dir) == step_dir
    assert step_dir.is_dir()
    assert list(step_dir.iterdir()) == []
    assert (tmp_path / "run" / "validate" / "series.parquet").exists()  # siblings untouched


def test_reset_dir_creates_a_missing_folder(tmp_path):
    path = tmp_path / "a" / "b" / "c"
    assert reset_dir(path) == path
    assert path.is_dir()


def test_step_output_removes_a_failed_steps_folder(tmp_path):
    step = tmp_path / "run" / "validate"
    step.mkdir(parents=True)
    (step / "stale.parquet").write_text("from an earlier attempt")
    with pytest.raises(RuntimeError, match="boom"), artifacts.step_output(step) as out:
        assert list(out.iterdir()) == []  # starts empty: no stale file survives a rerun
        (out / "half.parquet").write_text("written before the failure")
        raise RuntimeError("boom")
    assert not step.exists()


def test_step_output_keeps_a_finished_steps_files(tmp_path):
    with artifacts.step_output(tmp_path / "window") as out:
        (out / "layout.json").write_text("{}")
    assert (tmp_path / "window" / "layout.json").read_text() == "{}"


def test_a_recorded_input_is_listed_without_hashing_it_again(tmp_path, monkeypatch):
    producer, consumer = tmp_path / "split_scale", tmp_path / "window"
    producer.mkdir()
    data = producer / "scaled.npy"
    data.write_bytes(b"x" * 1000)
    artifacts.write_manifest(producer, step="split_scale", outputs={"scaled": data})
    entry = artifacts.recorded(producer, "scaled")
    assert entry == {"path": str(data), "bytes": 1000, "sha256": artifacts.sha256_file(data)}

    def no_hashing(path, **kwargs):
        raise AssertionError(f"hashed {path} again")

    consumer.mkdir()
    (consumer / "layout.json").write_text("{}")
    monkeypatch.setattr(artifacts, "sha256_file", no_hashing)
    with pytest.raises(AssertionError, match="hashed"):  # a path is hashed ...
        artifacts.write_manifest(consumer, step="window", inputs={"scaled": data}, outputs={})
    manifest = artifacts.write_manifest(  # ... a recorded entry is not
        consumer, step="window", inputs={"scaled": entry}, outputs={}
    )
    assert json.loads(manifest.read_text())["inputs"]["scaled"] == entry
    with pytest.raises(ArtifactError, match="lists no output 'model'"):
        artifacts.recorded(producer, "model")


def test_a_file_changed_after_its_manifest_is_a_failure_no_retry_can_change(tmp_path):
    from freshcast.errors import PermanentError

    path = artifacts.write_json(tmp_path / "x.json", {"a": 1})
    sha = artifacts.sha256_file(path)
    path.write_text('{"a": 2}')
    with pytest.raises(artifacts.DamagedArtifactError, match="changed after it was written") as err:
        artifacts.verify_file(path, sha, what="step.x")
    assert isinstance(err.value, PermanentError)  # the DAGs fail the task at once
    path.unlink()
    with pytest.raises(artifacts.ArtifactError) as missing:  # may appear later: retried
        artifacts.verify_file(path, sha, what="step.x")
    assert not isinstance(missing.value, PermanentError)
