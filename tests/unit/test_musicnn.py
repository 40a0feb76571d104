"""Tests of the PyTorch musicnn port against the original TensorFlow model.

The reference arrays in ``tests/data/musicnn_ref`` were produced once by ``scripts/musicnn_reference.py`` with
TensorFlow and librosa (seeded int16 clips, their librosa log-mel, the original graph's outputs); these tests need
no TensorFlow. Tests that need the pretrained weights skip, with the reason, when ``make weights`` was not run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from research_job.errors import ModelError
from research_job.models import musicnn, musicnn_weights
from research_job.models.base import Encoder
from research_job.models.registry import load_model

REF = Path(__file__).resolve().parents[1] / "data" / "musicnn_ref"
SR = musicnn.SAMPLE_RATE
OUTPUTS = ["mean_pool", "max_pool", "penultimate", "logits", "taggram"]


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    with np.load(REF / "inputs.npz") as z:
        return {k: z[k] for k in z.files}


def _wave(inputs: dict[str, np.ndarray], clip: str) -> np.ndarray:
    return inputs[f"wave_{clip}"].astype(np.float32) / 32768


_ENCODERS: dict[str, musicnn.MusicnnEncoder] = {}


def _encoder(checkpoint: str) -> musicnn.MusicnnEncoder:
    try:
        musicnn_weights.checkpoint_files(checkpoint)
    except ModelError as exc:
        pytest.skip(f"musicnn weights missing ({exc})")
    if checkpoint not in _ENCODERS:
        _ENCODERS[checkpoint] = musicnn.load(checkpoint, batch_size=3)
    return _ENCODERS[checkpoint]


@pytest.fixture(autouse=True)
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------- no weights
@pytest.mark.parametrize("clip", ["tones", "loud"])
def test_log_mel_matches_librosa(inputs: dict[str, np.ndarray], clip: str) -> None:
    ours = musicnn.log_mel(_wave(inputs, clip))
    ref = inputs[f"logmel_{clip}"]
    assert ours.dtype == np.float32 and ours.shape == ref.shape == (
        1 + len(inputs[f"wave_{clip}"]) // 256,
        96,
    )
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    assert np.isfinite(ours).all()  # the 'loud' clip overflows the original's float16 log to inf


def test_mel_filterbank_shape_and_norm() -> None:
    fb = musicnn.mel_filterbank()
    assert fb.shape == (96, 257) and fb.dtype == np.float32 and (fb >= 0).all()
    # Slaney norm: each triangle has area 1 in Hz, up to sampling on the 31.25 Hz FFT grid (wide bands only)
    hz = np.fft.rfftfreq(512, 1 / SR)
    areas = (fb * (hz[1] - hz[0])).sum(axis=1)
    np.testing.assert_allclose(areas[40:], 1.0, rtol=0.1)
    assert abs(areas[40:].mean() - 1.0) < 0.01
    assert (fb.argmax(axis=1)[1:] >= fb.argmax(axis=1)[:-1]).all()


def test_patches_follow_extractor() -> None:
    logmel = np.arange(400 * 96, dtype=np.float32).reshape(400, 96)
    p = musicnn.patches(logmel)
    assert p.shape == (2, 187, 96)  # 400 // 187: the trailing 26 frames are dropped, as in the original
    np.testing.assert_array_equal(p[1], logmel[187:374])
    short = musicnn.patches(logmel[:100])
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, 100:187], logmel[:87])  # repeat-padded
    with pytest.raises(ModelError, match="empty"):
        musicnn.patches(logmel[:0])


def test_missing_weights_say_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match=r"make weights.*fetch_musicnn_weights\.py"):
        musicnn.load("MSD_musicnn", weights_dir=tmp_path)
    monkeypatch.setenv("MUSICNN_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelError, match=r"MSD_musicnn.*not found.*elsewhere"):
        load_model("musicnn-msd")


def test_bad_options_list_valid_ones() -> None:
    with pytest.raises(
        ModelError, match=r"Unknown musicnn layer 'pool'\. Known: max_pool, mean_pool, penultimate"
    ):
        musicnn.load(layer="pool")
    with pytest.raises(ModelError, match=r"Unknown musicnn checkpoint 'MSD_vgg'"):
        musicnn.load("MSD_vgg")
    with pytest.raises(ModelError, match=r"batch_size='many' is not an integer"):
        musicnn.load(batch_size="many")


def test_extract_wheel_rejects_unknown_wheel(tmp_path: Path) -> None:
    fake = tmp_path / musicnn_weights.WHEEL_NAME
    fake.write_bytes(b"PK not the wheel")
    with pytest.raises(ModelError, match="differs from the known"):
        musicnn_weights.extract_wheel(fake, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("checkpoint", ["MSD_musicnn", "MTT_musicnn"])
def test_network_matches_tensorflow(inputs: dict[str, np.ndarray], checkpoint: str) -> None:
    enc = _encoder(checkpoint)
    with np.load(REF / f"{checkpoint}.npz") as z:
        ref = {k: z[k] for k in OUTPUTS}
    ours = enc.patch_outputs_from_logmel(inputs["patches"])
    for key in OUTPUTS:
        assert ours[key].shape == ref[key].shape, key
        # max_pool carries front-end activations up to ~100, where float32 summation order alone (TF's and
        # ours, each ~1e-4 from a float64 evaluation) moves the last digits: allow 1e-5 relative on top
        rtol = 1e-5 if key == "max_pool" else 0.0
        np.testing.assert_allclose(ours[key], ref[key], rtol=rtol, atol=1e-4, err_msg=key)


@pytest.mark.parametrize("clip", ["tones", "loud"])
def test_waveform_to_outputs_matches_tensorflow(inputs: dict[str, np.ndarray], clip: str) -> None:
    """End to end from samples: our log-mel + network vs librosa log-mel + the TF graph."""
    enc = _encoder("MSD_musicnn")
    with np.load(REF / "MSD_musicnn.npz") as z:
        ref = {k: z[k][inputs["patch_clip"] == clip] for k in OUTPUTS}
    ours = enc.patch_outputs(_wave(inputs, clip))
    for key in ("penultimate", "mean_pool", "taggram"):
        np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-4, err_msg=key)
    assert all(np.isfinite(v).all() for v in ours.values())


def test_embed_is_mean_of_patches(inputs: dict[str, np.ndarray]) -> None:
    a, b = _wave(inputs, "tones"), _wave(inputs, "loud")
    per_patch = _encoder("MSD_musicnn").patch_outputs(a)
    spec = "musicnn-msd?layer=max_pool&batch_size=2"
    enc = load_model(spec)  # options arrive as strings
    assert isinstance(enc, Encoder)
    assert enc.name == spec and enc.dim == 753 and enc.sample_rate == 16000 and enc.batch_size == 2
    emb = enc.embed([a, b])
    assert emb.shape == (2, 753) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[0], per_patch["max_pool"].mean(axis=0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(emb[1], enc.embed([b])[0], rtol=0, atol=1e-5)  # independent of the batch
    info = enc.info()
    assert info["layer"] == "max_pool" and info["pooling"] == "mean" and info["params"]["batch_size"] == 2
    assert info["weights_sha256"] == musicnn_weights.KNOWN_SHA256["MSD_musicnn"]
    default = _encoder("MSD_musicnn")
    assert default.layer == "penultimate" and default.dim == 200
    np.testing.assert_allclose(
        default.embed([a])[0], per_patch["penultimate"].mean(axis=0), rtol=0, atol=1e-5
    )


def test_default_batch_is_small_on_cpu_and_does_not_change_embeddings(inputs: dict[str, np.ndarray]) -> None:
    assert musicnn.default_batch_patches(torch.device("cpu")) == musicnn.CPU_BATCH_PATCHES == 2
    assert musicnn.default_batch_patches(torch.device("cuda")) == musicnn.ACCELERATOR_BATCH_PATCHES == 8
    _encoder("MSD_musicnn")
    default = load_model("musicnn-msd")
    assert default.batch_size == 2 and default.info()["params"]["batch_size"] == 2
    # 30 s: 10 patches, split unevenly by every batch size below
    wave = np.tile(np.concatenate([_wave(inputs, "tones"), _wave(inputs, "loud")]), 3)
    by_batch = {bs: load_model(f"musicnn-msd?batch_size={bs}").embed([wave])[0] for bs in (1, 3, 8)}
    for bs, emb in by_batch.items():
        np.testing.assert_allclose(emb, default.embed([wave])[0], rtol=0, atol=1e-5, err_msg=f"batch {bs}")


@pytest.mark.parametrize("layer", sorted(musicnn.LAYERS))
def test_layer_dims(layer: str) -> None:
    _encoder("MTT_musicnn")
    enc = load_model(f"musicnn-mtt?layer={layer}")
    assert enc.dim == musicnn.LAYERS[layer] and enc.info()["layer"] == layer
    assert enc.info()["weights_sha256"] == musicnn_weights.KNOWN_SHA256["MTT_musicnn"]


def test_short_and_empty_waveforms() -> None:
    enc = _encoder("MSD_musicnn")
    rng = np.random.default_rng(3)
    short = (0.1 * rng.standard_normal(SR // 2)).astype(np.float32)
    emb = enc.embed([short])
    assert emb.shape == (1, 200) and np.isfinite(emb).all()
    assert enc.embed([]).shape == (0, 200)
    with pytest.raises(ModelError, match="empty waveform"):
        enc.embed([np.zeros(0, np.float32)])


# ---------------------------------------------------------------------------------------------------- sanity
def _piano(seconds: float = 6.0) -> np.ndarray:
    """C-major arpeggios of piano-like notes: slightly stretched partials, fast attack, exponential decay."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    notes = [60, 64, 67, 72, 65, 69, 72, 77, 67, 71, 74, 79]
    for i, start in enumerate(np.arange(0, seconds, 0.25)):
        f0 = 440 * 2 ** ((notes[i % len(notes)] - 69) / 12)
        tt = t[t >= start] - start
        note = sum(
            np.sin(2 * np.pi * f0 * h * np.sqrt(1 + 0.0004 * h * h) * tt) * np.exp(-(1.5 + 0.8 * h) * tt) / h
            for h in range(1, 10)
        )
        y[t >= start] += 0.2 * note * (1 - np.exp(-tt * 400))
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def _beat(seconds: float = 6.0, bpm: float = 128.0) -> np.ndarray:
    """Four-on-the-floor: pitch-swept kicks, off-beat noise hats, a gated saw bass."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    beat = 60 / bpm
    for start in np.arange(0, seconds, beat):
        seg = (t >= start) & (t < start + beat)
        tt = t[seg] - start
        y[seg] += 0.9 * np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 8)
        hat = (t >= start + beat / 2) & (t < start + beat / 2 + 0.05)
        y[hat] += 0.2 * rng.standard_normal(hat.sum()) * np.exp(-np.arange(hat.sum()) / SR * 80)
    saw = ((55 * 2 ** (np.floor(t / (4 * beat)) % 2 * 3 / 12)) * t) % 1.0 * 2 - 1
    y += 0.25 * saw * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * t / (beat / 2))))
    return (0.7 * y / np.abs(y).max()).astype(np.float32)


def _top(enc: musicnn.MusicnnEncoder, wave: np.ndarray, k: int) -> list[str]:
    tag_scores = enc.patch_outputs(wave)["taggram"].mean(axis=0)
    return [enc.tags[i] for i in np.argsort(-tag_scores)[:k]]


def test_top_tags_make_sense() -> None:
    mtt = _encoder("MTT_musicnn")
    assert len(mtt.tags) == 50 and mtt.tags[9] == "piano"
    piano = _top(mtt, _piano(), 5)
    assert piano[0] == "piano" and "classical" in piano
    assert {"techno", "electronic"} <= set(_top(mtt, _beat(), 3))
    msd = _encoder("MSD_musicnn")
    beat = _top(msd, _beat(), 5)
    assert beat[0] == "electronic" and "dance" in beat
    assert "instrumental" in _top(msd, _piano(), 3)
