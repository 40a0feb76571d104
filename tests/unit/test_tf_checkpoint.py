"""Tests of the hand-written TensorFlow checkpoint (TensorBundle) reader.

The real-checkpoint tests compare every tensor against what TensorFlow's own reader returned (names, dtypes,
shapes and a sha256 of the bytes, committed by ``scripts/musicnn_reference.py`` in ``tests/data/musicnn_ref``);
they need the musicnn weights (``make weights``) and skip with that reason when they are missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from research_job.errors import ModelError
from research_job.models import musicnn_weights
from research_job.models.tf_checkpoint import CheckpointError, TensorBundle, crc32c, mask_crc, unmask_crc

REF = Path(__file__).resolve().parents[1] / "data" / "musicnn_ref"
CHECKPOINTS = ["MSD_musicnn", "MTT_musicnn"]


def _crc32c_bytewise(data: bytes) -> int:
    """Textbook bit-by-bit CRC32C, independent of the vectorised implementation."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def _checkpoint_dir(name: str) -> Path:
    try:
        prefix, _ = musicnn_weights.checkpoint_files(name)
    except ModelError as exc:
        pytest.skip(f"musicnn weights missing ({exc})")
    return Path(prefix)


def test_crc32c_known_vectors() -> None:
    # RFC 3720 (iSCSI) appendix B.4 test vectors and the standard check value
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0


@pytest.mark.parametrize("n", [1, 3, 63, 64, 65, 127, 128, 1000, 4097])
def test_crc32c_matches_bytewise(n: int) -> None:
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc32c(data) == _crc32c_bytewise(data)


def test_mask_roundtrip() -> None:
    for v in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask_crc(mask_crc(v)) == v


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_reads_every_tensor_like_tensorflow(name: str) -> None:
    folder = _checkpoint_dir(name)
    expected = json.loads((REF / f"{name}_tensors.json").read_text())
    bundle = TensorBundle(str(folder) + "/")
    assert bundle.names() == sorted(expected)
    for tensor_name, exp in expected.items():
        entry = bundle.entries[tensor_name]
        assert entry.dtype_name == exp["dtype"], tensor_name
        assert list(entry.shape) == exp["shape"], tensor_name
        value = bundle.read(tensor_name)
        assert value.dtype == np.dtype(exp["dtype"]) and list(value.shape) == exp["shape"], tensor_name
        assert hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest() == exp["sha256"], tensor_name
    assert bundle.read("conv2d/kernel").shape == (7, 38, 1, 204)


@pytest.fixture
def ckpt_copy(tmp_path: Path) -> Path:
    src = _checkpoint_dir("MSD_musicnn")
    dst = tmp_path / "ckpt"
    dst.mkdir()
    for f in (".index", ".data-00000-of-00001"):
        shutil.copy(src / f, dst / f)
    return dst


def test_truncated_data_file_names_the_file(ckpt_copy: Path) -> None:
    data = ckpt_copy / ".data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    bundle = TensorBundle(str(ckpt_copy) + "/")  # the index is intact
    with pytest.raises(CheckpointError, match=r"\.data-00000-of-00001.*truncated"):
        bundle.read_all()


def test_corrupted_data_byte_fails_crc(ckpt_copy: Path) -> None:
    bundle = TensorBundle(str(ckpt_copy) + "/")
    entry = bundle.entries["dense/kernel"]
    data = ckpt_copy / ".data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x10
    data.write_bytes(bytes(raw))
    bundle = TensorBundle(str(ckpt_copy) + "/")
    bundle.read("conv2d/kernel")  # other tensors still read
    with pytest.raises(
        CheckpointError, match=r"\.data-00000-of-00001: tensor 'dense/kernel' fails its CRC32C"
    ):
        bundle.read("dense/kernel")


def test_truncated_index_names_the_file(ckpt_copy: Path) -> None:
    index = ckpt_copy / ".index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"\.index: bad table magic"):
        TensorBundle(str(ckpt_copy) + "/")
    index.write_bytes(b"short")
    with pytest.raises(CheckpointError, match=r"\.index: 5 bytes, too short"):
        TensorBundle(str(ckpt_copy) + "/")


def test_corrupted_index_block_fails_crc(ckpt_copy: Path) -> None:
    index = ckpt_copy / ".index"
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0x01  # inside the first data block
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"\.index: block at offset 0 fails its CRC32C"):
        TensorBundle(str(ckpt_copy) + "/")


def test_missing_files_and_unknown_tensor(tmp_path: Path, ckpt_copy: Path) -> None:
    with pytest.raises(CheckpointError, match=r"Cannot read checkpoint index .*nothing\.index"):
        TensorBundle(str(tmp_path / "nothing"))
    (ckpt_copy / ".data-00000-of-00001").unlink()
    bundle = TensorBundle(str(ckpt_copy) + "/")
    with pytest.raises(CheckpointError, match=r"Cannot read checkpoint data .*\.data-00000-of-00001"):
        bundle.read("dense/bias")
    with pytest.raises(CheckpointError, match=r"Unknown tensor 'nope'.*Known: batch_normalization/beta"):
        bundle.read("nope")
