"""musicnn int8 (``export-model --precision int8``, ``?runtime=onnx&precision=int8``): calibrated on audio the
test writes, checked on held-out tracks and on the committed TensorFlow reference arrays (per-track cosine
>= 0.995), installed where the registry finds it, recorded as its own model, and refused clearly when it is
missing, tampered with or asked for on the wrong runtime."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from research_job import schema
from research_job.config import CommonConfig
from research_job.errors import ConfigError, ModelError
from research_job.incremental import same_model
from research_job.models import musicnn, onnx_runtime
from research_job.models.registry import check_spec, load_model
from research_job.steps import export_model
from research_job.steps.export_model import ExportModelConfig
from tests.helpers.weights import linked_weights

pytest.importorskip("onnxruntime")
REF = Path(__file__).resolve().parents[1] / "data" / "musicnn_ref"
SR = 16000


def _write_wav(path: Path, x: np.ndarray) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


def _tracks(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` seeded 'tracks' of 10 s: a few harmonic notes with vibrato, percussive noise bursts and a noise bed,
    each with its own timbre (so calibration sees a spread of spectra)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(SR * 10) / SR
    out = []
    for i in range(n):
        x = np.zeros_like(t)
        for _ in range(4):
            f0, start = rng.uniform(90, 700), rng.uniform(0, 8)
            env = np.clip((t - start) * 20, 0, 1) * np.exp(-np.clip(t - start, 0, None) * rng.uniform(0.3, 2))
            for h in range(1, 6):
                x += (
                    env
                    * rng.uniform(0.05, 0.3)
                    / h
                    * np.sin(2 * np.pi * h * f0 * t * (1 + 0.003 * np.sin(5 * t)))
                )
        hits = rng.random(t.size) < 2e-4
        x += 0.3 * np.convolve(hits * rng.standard_normal(t.size), np.exp(-np.arange(800) / 80), "same")
        x += 0.01 * rng.standard_normal(t.size)
        path = folder / f"track{i:02d}.wav"
        _write_wav(path, 0.8 * x / np.abs(x).max())
        out.append(path)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An int8 MSD_musicnn calibrated on 5 test tracks (+1 undecodable file), checked on 3 others, installed into
    a weights folder of this test (never the shared cache)."""
    root = linked_weights(tmp_path_factory.mktemp("weights"))
    audio = tmp_path_factory.mktemp("catalogue")
    _tracks(audio / "album", 10)
    (audio / "album" / "broken.flac").write_bytes(b"fLaC not really")
    spec = f"musicnn-msd?runtime=onnx&weights_dir={root}"
    cfg = ExportModelConfig(
        common=CommonConfig(model=spec), precision="int8", calibrate_from=audio, calibration_tracks=6,
        parity_tracks=3, out=tmp_path_factory.mktemp("out") / "int8",
    )  # fmt: skip
    meta = export_model.run(cfg)
    return {"root": root, "meta": meta, "out": cfg.out, "audio": audio}


def test_the_int8_file_is_described_and_close_to_the_port(installed: dict[str, Any]) -> None:
    meta = installed["meta"]
    on_disk = schema.read_artifact(installed["out"] / "model_meta.json", "model_meta")
    assert on_disk["precision"] == "int8" and on_disk["sha256"] == meta["sha256"]
    q = on_disk["quantization"]
    # the two timbral convolutions (the temporal ones and the mid end stay float32)
    assert len(q["nodes"]) == 2 and q["format"] == "QDQ" and "reduce_range" in q["weights"]
    cal = q["calibration"]
    chosen, _ = export_model.calibration_files(installed["audio"], 6, 3)
    broken = sum(p.name == "broken.flac" for p in chosen)
    # the seeded choice is fixed: the undecodable file is among the 6 chosen, skipped, and the run goes on
    assert broken == 1 and cal["n_skipped"] == 1 and cal["n_tracks"] == 5 and len(cal["files"]) == 5
    assert "album/broken.flac" not in cal["files"] and len(cal["sha256"]) == 64
    par = on_disk["parity"]
    assert par["min_cosine_required"] == export_model.INT8_MIN_COSINE and "held-out" in par["inputs"]
    assert all(v["min_cosine"] >= 0.995 for v in par["per_output"].values()), par
    # held-out means held out: none of the parity tracks was calibrated on
    cal_files, parity_files = export_model.calibration_files(installed["audio"], 6, 3)
    assert not set(cal_files) & set(parity_files) and len(parity_files) == 3


def test_int8_on_the_tensorflow_reference_patches(installed: dict[str, Any]) -> None:
    enc = load_model(f"musicnn-msd?runtime=onnx&precision=int8&weights_dir={installed['root']}")
    with np.load(REF / "inputs.npz") as z:
        patches, clips = z["patches"], list(z["patch_clip"])
    with np.load(REF / "MSD_musicnn.npz") as z:
        ref = {k: z[k] for k in onnx_runtime.OUTPUTS}
    ours = enc.patch_outputs_from_logmel(patches)
    # 'loud' is the float16-overflow reference: an int16-scaled wave (peak 32767, 90 dB over the full scale that
    # decoding yields), loud in every band, so past the calibrated ranges, which clip: it degrades, gracefully
    loud = clips.index("loud")
    for key in ("penultimate", "mean_pool", "max_pool", "taggram"):
        a, b = ref[key], ours[key]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert np.delete(cos, loud).min() >= 0.995, (key, cos)
        assert cos[loud] >= 0.98, (key, cos)
    # and it is not the float32 network under another name: the outputs differ
    assert np.abs(ours["penultimate"] - ref["penultimate"]).max() > 1e-4


def test_int8_is_its_own_model_and_runs_never_mix(installed: dict[str, Any]) -> None:
    root = installed["root"]
    fp32 = load_model(f"musicnn-msd?runtime=onnx&weights_dir={root}")
    int8 = load_model(f"musicnn-msd?runtime=onnx&precision=int8&weights_dir={root}")
    params = int8.info()["params"]
    assert params["precision"] == "int8" and params["int8_sha256"] == installed["meta"]["sha256"]
    assert params["int8_calibration"]["n_tracks"] == 5 and params["int8_calibration"]["n_patches"] >= 5
    assert "precision" not in fp32.info()["params"]  # fp32 folders stay what they were
    meta = {"model": fp32.info()}
    assert same_model(meta, fp32.name, fp32.info())
    assert not same_model(meta, int8.name, int8.info())


def test_missing_tampered_and_wrong_runtime_are_refused(installed: dict[str, Any], tmp_path: Path) -> None:
    empty = linked_weights(tmp_path / "weights")
    with pytest.raises(
        ModelError, match=r"No int8 model of musicnn-msd is installed .*export-model .*--precision int8"
    ):
        load_model(f"musicnn-msd?runtime=onnx&precision=int8&weights_dir={empty}")
    with pytest.raises(ModelError, match=r"precision=int8 runs on onnxruntime: add runtime=onnx"):
        musicnn.load(precision="int8")
    with pytest.raises(ModelError, match=r"Unknown musicnn precision 'fp16'\. Known: fp32, int8"):
        musicnn.load(runtime="onnx", precision="fp16")
    with pytest.raises(ModelError, match="precision"):
        check_spec("musicnn-msd?runtime=onnx&precision=int4")
    # a file that is not the one its record describes
    installed_file = onnx_runtime.int8_model(
        "MSD_musicnn", load_model("musicnn-msd").weights_sha256, installed["root"]
    )
    copy_root = linked_weights(tmp_path / "copy")
    (copy_root / "onnx").mkdir()
    dest = copy_root / "onnx" / installed_file.name
    dest.write_bytes(installed_file.read_bytes()[:-1] + b"\0")
    record = json.loads(installed_file.with_suffix(".json").read_text())
    dest.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(ModelError, match="is not the int8 file its record .* describes"):
        load_model(f"musicnn-msd?runtime=onnx&precision=int8&weights_dir={copy_root}")


def test_export_options_are_checked_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--precision int8 needs --calibrate-from"):
        export_model.check(ExportModelConfig(precision="int8"))
    with pytest.raises(ConfigError, match="--precision int8 writes an ONNX model: use --format onnx"):
        export_model.check(ExportModelConfig(precision="int8", format="torchscript", calibrate_from=tmp_path))
    with pytest.raises(ConfigError, match="--calibrate-from calibrates an int8 model: add --precision int8"):
        export_model.check(ExportModelConfig(calibrate_from=tmp_path))
    with pytest.raises(ConfigError, match="is not a folder"):
        export_model.check(ExportModelConfig(precision="int8", calibrate_from=tmp_path / "nope"))
    (tmp_path / "one.wav").write_bytes(b"")
    with pytest.raises(ConfigError, match="1 audio files found .*needs at least 2"):
        export_model.calibration_files(tmp_path, 4, 2)
    # a version folder calibrates on its audio_cache/
    _tracks(tmp_path / "v1" / "audio_cache" / "a", 3)
    (tmp_path / "v1" / "tracks.csv").write_text("track_id\n")
    cal, par = export_model.calibration_files(tmp_path / "v1", 2, 5)
    assert len(cal) == 2 and len(par) == 1 and all("audio_cache" in str(p) for p in cal + par)
