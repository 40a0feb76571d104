"""musicnn on ONNX Runtime (``runtime=onnx``): the same outputs as the original TensorFlow graph (the committed
reference arrays of ``tests/data/musicnn_ref``, as the PyTorch port's parity test), per-track cosine >= 0.99999
to the PyTorch port on every layer, recorded as its own model, and a clear error for a bad runtime or file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from research_job.errors import ModelError
from research_job.incremental import same_model
from research_job.models import musicnn
from research_job.models.registry import check_spec, load_model
from tests.helpers.weights import linked_weights

pytest.importorskip("onnxruntime")
REF = Path(__file__).resolve().parents[1] / "data" / "musicnn_ref"
OUTPUTS = ["mean_pool", "max_pool", "penultimate", "logits", "taggram"]


@pytest.fixture(scope="module")
def encoders(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[musicnn.MusicnnEncoder, musicnn.MusicnnEncoder]:
    """(PyTorch, ONNX) encoders of MSD_musicnn; the ONNX file is exported into a folder of this test."""
    root = linked_weights(tmp_path_factory.mktemp("weights"))
    torch.set_num_threads(2)
    return musicnn.load("MSD_musicnn", batch_size=3), musicnn.load(
        "MSD_musicnn", batch_size=3, weights_dir=root, runtime="onnx"
    )


def test_onnx_network_matches_tensorflow(encoders: tuple[musicnn.MusicnnEncoder, ...]) -> None:
    _, onnx = encoders
    with np.load(REF / "inputs.npz") as z:
        patches = z["patches"]
    with np.load(REF / "MSD_musicnn.npz") as z:
        ref = {k: z[k] for k in OUTPUTS}
    ours = onnx.patch_outputs_from_logmel(patches)
    for key in OUTPUTS:
        rtol = 1e-5 if key == "max_pool" else 0.0  # as the PyTorch port's test: activations up to ~100
        np.testing.assert_allclose(ours[key], ref[key], rtol=rtol, atol=1e-4, err_msg=key)


def test_every_layer_equals_the_pytorch_port_per_track(encoders: tuple[musicnn.MusicnnEncoder, ...]) -> None:
    port, onnx = encoders
    rng = np.random.default_rng(7)
    t = np.arange(16000 * 9) / 16000
    waves = [
        (0.3 * np.sin(2 * np.pi * rng.uniform(80, 900) * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for _ in range(3)
    ]
    layers = tuple(musicnn.LAYERS)  # the frame layers (logits are the taggram's pre-activations)
    a, fa = port.embed_frames(waves, layers)
    b, fb = onnx.embed_frames(waves, layers)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.99999, cos
    for x, y in zip(fa, fb, strict=True):
        assert x.shape == y.shape
        pooled = [(x[:, s].mean(0), y[:, s].mean(0)) for s in _layer_slices()]
        for p, q in pooled:
            assert float(p @ q / np.linalg.norm(p) / np.linalg.norm(q)) >= 0.99999


def _layer_slices() -> list[slice]:
    out, start = [], 0
    for name in musicnn.LAYERS:
        out.append(slice(start, start + musicnn.LAYERS[name]))
        start += musicnn.LAYERS[name]
    return out


def test_the_runtime_is_part_of_the_model_so_runs_never_mix(
    encoders: tuple[musicnn.MusicnnEncoder, ...],
) -> None:
    port, onnx = encoders
    assert "runtime" not in port.info()["params"]  # folders embedded before runtimes stay the port's
    params = onnx.info()["params"]
    assert params["runtime"] == "onnx" and params["onnx_opset"] >= 17 and params["onnxruntime"]
    meta = {"model": {**port.info(), "version": port.info()["version"]}}
    assert same_model(meta, port.name, port.info())
    assert not same_model(meta, onnx.name, onnx.info())  # reuse, incremental and find-similar all refuse


def test_a_bad_runtime_lists_the_valid_ones() -> None:
    with pytest.raises(ModelError, match=r"Unknown musicnn runtime 'tensorrt'\. Known: onnx, torch"):
        musicnn.load(runtime="tensorrt")
    with pytest.raises(ModelError, match="runtime"):
        check_spec("musicnn-msd?runtime=tensorrt")
    check_spec("musicnn-msd?runtime=onnx")


def test_a_corrupt_onnx_file_is_named(tmp_path: Path) -> None:
    from research_job.models.onnx_runtime import OnnxNet

    bad = tmp_path / "MSD_musicnn-0123-opset18.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    with pytest.raises(ModelError, match="Cannot load the ONNX model .*MSD_musicnn-0123-opset18.onnx"):
        OnnxNet(bad, threads=1)


def test_the_registry_spec_loads_the_onnx_runtime(encoders: tuple[musicnn.MusicnnEncoder, ...]) -> None:
    enc = load_model("musicnn-msd?runtime=onnx&batch_size=3")
    assert enc.onnx is not None and enc.info()["params"]["runtime"] == "onnx"
