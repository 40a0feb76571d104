"""io.atomic.atomic_path: a library that writes by file name (ONNX exporters, hnswlib) gets a temp path beside
the target; the target appears only complete, and a failure leaves it (and the folder) as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from research_job.io.atomic import atomic_path


def test_the_target_appears_only_when_the_writer_finished(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.onnx"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target and not target.exists()
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_a_failed_writer_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "hnsw.index"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="exporter died"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("exporter died")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["hnsw.index"]
