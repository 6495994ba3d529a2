import pytest

from simulator.atomic import atomic_copy, atomic_write_bytes, atomic_writer, write_if_changed


class Boom(Exception):
    pass


def test_failed_write_leaves_no_partial_and_no_temp_file(tmp_path):
    target = tmp_path / "batch-001.jsonl.gz"
    with pytest.raises(Boom), atomic_writer(target) as handle:
        handle.write(b"half a record")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "store.json"
    atomic_write_bytes(target, b"old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("simulator.atomic.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["store.json"]


def test_temp_file_is_hidden_and_in_the_same_directory(tmp_path):
    target = tmp_path / "day" / "batch-001.jsonl.gz"
    with atomic_writer(target) as handle:
        (name,) = [p.name for p in target.parent.iterdir()]
        assert name.startswith(".batch-001.jsonl.gz.") and name.endswith(".tmp")
        handle.write(b"x")
    assert [p.name for p in target.parent.iterdir()] == ["batch-001.jsonl.gz"]


def test_write_if_changed_and_copy(tmp_path):
    target = tmp_path / "f"
    assert write_if_changed(target, b"abc")
    mtime = target.stat().st_mtime_ns
    assert not write_if_changed(target, b"abc")
    assert target.stat().st_mtime_ns == mtime
    assert write_if_changed(target, b"abd")
    atomic_copy(target, tmp_path / "g")
    assert (tmp_path / "g").read_bytes() == b"abd"
