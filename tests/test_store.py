"""The run store: one marker per store, config comparisons that name the differing fields, atomic writes."""

import errno
import json
import os

import pytest

from acpg_lab import TrainConfig, store
from acpg_lab.profiles import repository_root


def test_a_directory_is_finished_when_all_its_markers_exist(tmp_path):
    assert not store.is_finished(tmp_path, kind="cached_run")
    (tmp_path / "config.json").write_text("{}")
    assert store.is_finished(tmp_path, kind="run") and not store.is_finished(tmp_path, kind="cached_run")
    (tmp_path / "evaluation.csv").write_text("seed\n")
    assert store.is_finished(tmp_path, kind="cached_run")
    with pytest.raises(ValueError, match=r"unknown store kind 'pieces'.*'piece'"):
        store.is_finished(tmp_path, kind="pieces")


def test_stored_evidence_pieces_are_recognised():
    """The pieces stored before the store existed still count as finished (the marker is unchanged)."""
    pieces = sorted((repository_root() / "results" / "evidence").glob("*/*/*/seeds_*"))
    assert len(pieces) >= 100 and all(store.is_finished(p, kind="piece") for p in pieces)


def test_differences_name_the_fields():
    assert store.differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b", "c"]
    assert store.differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}, absent_equal=True) == ["b"]
    assert store.differences({"a": 1, "gone": 0}, {"a": 1}, absent_equal=True) == ["gone"]
    assert store.differences({"a": 1}, {"a": 2}, ignore=frozenset({"a"})) == []


def test_config_differences_count_new_fields_as_equal(tmp_path):
    cfg = TrainConfig(env_id="CartPole-v1", seeds=(0, 1))
    stored = store.config_json(cfg)
    assert store.config_differences(stored, cfg) == []
    del stored["pfo_coef"]  # a field added after the run was stored: its default keeps the old behaviour
    assert store.config_differences(stored, cfg) == []
    stored["lr"] = 1.0
    assert store.config_differences(stored, cfg) == ["lr"]
    (tmp_path / "config.json").write_text(json.dumps({"config": stored}))
    with pytest.raises(ValueError, match=r"another config \(differing: \['lr'\]\)"):
        store.check_stored_config(tmp_path, cfg)
    with pytest.raises(store.IntegrityError, match=r"meta\.json is missing"):
        store.check_stored_config(tmp_path, cfg, marker="meta.json")


def test_atomic_writes_leave_the_old_content_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    store.write_atomic(path, "old")
    store.write_atomic_with(tmp_path / "g", lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_text() == "old" and (tmp_path / "g").read_bytes() == b"new"

    def broken(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        store.write_atomic_with(path, broken)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O"):
        store.write_atomic(path, b"new")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.json", "g"]
    with pytest.raises(TypeError, match="bytes or str"):
        store.write_atomic(path, 3)
