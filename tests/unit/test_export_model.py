"""export-model: ONNX and TorchScript files that reproduce the PyTorch port, their model_meta.json, the Triton
repository layout, and clear refusals (a non-musicnn model, --triton with TorchScript)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from research_job import schema
from research_job.config import CommonConfig
from research_job.errors import ConfigError
from research_job.models import musicnn_weights
from research_job.provenance import sha256_file
from research_job.steps import export_model
from research_job.steps.export_model import ExportModelConfig

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _weights() -> None:
    try:
        musicnn_weights.checkpoint_files("MSD_musicnn")
    except Exception as exc:  # noqa: BLE001 - ModelError with the fetch hint
        pytest.skip(f"musicnn weights missing ({exc})")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_file_reproduces_the_port_and_is_described(tmp_path: Path, fmt: str) -> None:
    cfg = ExportModelConfig(common=CommonConfig(model="musicnn-msd"), format=fmt, out=tmp_path / "out")
    meta = export_model.run(cfg)
    on_disk = schema.read_artifact(tmp_path / "out" / "model_meta.json", "model_meta")
    assert on_disk == json.loads(json.dumps(meta))
    path = tmp_path / "out" / meta["file"]
    assert meta["sha256"] == sha256_file(path) and meta["size_bytes"] == path.stat().st_size
    assert {o["name"]: o["shape"][1] for o in meta["outputs"]} == {
        "mean_pool": 753, "max_pool": 753, "penultimate": 200, "logits": 50, "taggram": 50,
    }  # fmt: skip
    assert all(v["min_cosine"] >= export_model.MIN_COSINE for v in meta["parity"]["per_output"].values())
    # the file, run by its own runtime on other patches than the export's check, still equals the port
    from research_job.models.registry import load_model

    port = load_model("musicnn-msd")
    patches = np.random.default_rng(42).standard_normal((5, 187, 96)).astype(np.float32)
    got, _ = export_model._run_file(fmt, path, patches)
    ref = port.patch_outputs_from_logmel(patches)
    for key, figs in export_model.parity({k: ref[k] for k in got}, got).items():
        assert figs["min_cosine"] >= 0.99999, key


def test_triton_repository_layout_and_config(tmp_path: Path) -> None:
    cfg = ExportModelConfig(
        common=CommonConfig(model="musicnn-msd"), triton=True, max_batch_size=64, out=tmp_path / "repo"
    )
    meta = export_model.run(cfg)
    model_dir = tmp_path / "repo" / "musicnn-msd"
    assert (model_dir / "1" / "model.onnx").is_file() and meta["file"] == "1/model.onnx"
    config = (model_dir / "config.pbtxt").read_text()
    assert 'name: "musicnn-msd"' in config and 'platform: "onnxruntime_onnx"' in config
    assert "max_batch_size: 64" in config and "preferred_batch_size: [ 8, 32, 64 ]" in config
    assert '{ name: "penultimate" data_type: TYPE_FP32 dims: [ 200 ] }' in config
    assert meta["triton"] == {"repository": str(tmp_path / "repo"), "config": "config.pbtxt",
                              "max_batch_size": 64, "instance_kind": "KIND_CPU"}  # fmt: skip


def test_refusals_name_the_bad_value_and_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--triton lays out an ONNX model: use --format onnx"):
        export_model.run(ExportModelConfig(format="torchscript", triton=True, out=tmp_path))
    with pytest.raises(ConfigError, match="'dsp-stats' is a .*Valid: musicnn-msd, musicnn-mtt"):
        export_model.run(ExportModelConfig(common=CommonConfig(model="dsp-stats"), out=tmp_path))
    with pytest.raises(ConfigError, match="max_batch_size must be >= 1"):
        export_model.check(ExportModelConfig(triton=True, max_batch_size=0))
