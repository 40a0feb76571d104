"""Tests of the transformers backends (``hf:``, ``mert-v1-95m``, ``clap-music``) and the device choice.

No network: every model is a tiny randomly initialised checkpoint that transformers builds here and saves with
``save_pretrained`` (HuBERT, the architecture MERT derives from, with a 24 kHz feature extractor; a tiny CLAP),
loaded through the real loading code from a folder or from a hand-built Hugging Face cache. The hub-unreachable
paths are exercised with HF_HUB_OFFLINE and with an endpoint on a closed loopback port.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from research_job.errors import AudioDecodeError, ModelError  # noqa: E402
from research_job.models import hf  # noqa: E402
from research_job.models.base import Encoder  # noqa: E402
from research_job.models.device import resolve_device, resolve_dtype  # noqa: E402
from research_job.models.registry import load_model  # noqa: E402
from research_job.provenance import sha256_files  # noqa: E402

SR = 24_000
CHUNK_SEC = 0.05  # 1200 samples at 24 kHz
CHUNK = 1200
N_LAYERS = 2
HIDDEN = 16
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAIL_FAST_SEC = 20.0


def _wave(seed: int, n: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def hubert_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HuBERT (MERT's architecture family) + a 24 kHz Wav2Vec2 feature extractor, like MERT's."""
    torch.manual_seed(0)
    config = transformers.HubertConfig(
        hidden_size=HIDDEN, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8, 8), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("hubert") / "ckpt"
    transformers.HubertModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clap_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLAP (HTSAT audio tower + text tower) + a 48 kHz feature extractor with 1 s inputs."""
    torch.manual_seed(0)
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64),
        audio_config=dict(spec_size=64, num_mel_bins=16, window_size=4, patch_size=4, patch_stride=(4, 4),
                          depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=8, hidden_size=16),
        projection_dim=12,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("clap") / "ckpt"
    transformers.ClapModel(config).save_pretrained(folder)
    transformers.ClapFeatureExtractor(
        feature_size=16, sampling_rate=48_000, hop_length=480, max_length_s=1, fft_window_size=1024,
        truncation="rand_trunc", padding="repeatpad",
    ).save_pretrained(folder)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, hubert_ckpt: Path) -> Path:
    """A Hugging Face cache holding the tiny HuBERT under MERT's hub id, as `hf download` would leave it."""
    cache = tmp_path_factory.mktemp("hfcache")
    repo = cache / "models--m-a-p--MERT-v1-95M"
    shutil.copytree(hubert_ckpt, repo / "snapshots" / FAKE_COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return cache


@pytest.fixture(scope="module")
def auto_enc(hubert_ckpt: Path) -> Encoder:
    return load_model(f"hf:{hubert_ckpt}?chunk_sec={CHUNK_SEC}&device=cpu")


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ----------------------------------------------------------------------------------------------------------------
# device


def test_device_auto_picks_best_available_and_fp16_only_on_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("CPU") == "cpu"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("auto", "cuda") is torch.float16
    assert resolve_dtype("fp16", "cuda:0") is torch.float16
    assert resolve_dtype("float32", "cuda") is torch.float32
    with pytest.raises(ModelError, match="only supported on CUDA"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(ModelError, match=r"Unknown dtype 'int8'\. Known: auto, float16, float32"):
        resolve_dtype("int8", "cpu")
    with pytest.raises(ModelError, match=r"Unknown device 'tpu'\. Known: .*cpu.*cuda"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="CUDA is not available"):
        resolve_device("cuda")


# ----------------------------------------------------------------------------------------------------------------
# hf:<path> end to end through the registry


def test_hf_local_checkpoint_through_registry(auto_enc: Encoder, hubert_ckpt: Path) -> None:
    assert isinstance(auto_enc, Encoder)
    assert auto_enc.name == f"hf:{hubert_ckpt}?chunk_sec={CHUNK_SEC}&device=cpu"
    assert auto_enc.dim == HIDDEN
    assert auto_enc.sample_rate == SR
    out = auto_enc.embed([_wave(1, 3 * CHUNK), _wave(2, 5000), _wave(3, 700)])
    assert out.shape == (3, HIDDEN) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.linalg.norm(out, axis=1).min() > 0
    # different audio, different vectors
    assert not np.allclose(out[0], out[1], atol=1e-4)
    info = auto_enc.info()
    assert info["name"] == auto_enc.name
    assert info["weights_sha256"] == sha256_files([hubert_ckpt / "model.safetensors"])
    assert info["version"].startswith(f"transformers {transformers.__version__}")
    assert info["pooling"] == "mean" and info["layer"] == "last"
    params = info["params"]
    assert (
        params["sample_rate"] == SR and params["chunk_sec"] == CHUNK_SEC and params["chunk_samples"] == CHUNK
    )
    assert params["dtype"] == "float32" and params["device"] == "cpu"
    assert params["min_samples"] == 40  # conv kernels (10,3,3), strides (5,2,2): (((1-1)*2+3-1)*2+3-1)*5+10
    json.loads(json.dumps(info))  # plain JSON types only (it goes into embeddings_meta.json)


def test_embed_is_deterministic_and_batching_is_exact(auto_enc: Encoder, hubert_ckpt: Path) -> None:
    waves = [_wave(10, 2 * CHUNK + 300), _wave(11, CHUNK), _wave(12, 2 * CHUNK + 300), _wave(13, 90)]
    together = auto_enc.embed(waves)
    np.testing.assert_array_equal(together, auto_enc.embed(waves))
    one_by_one = np.stack([auto_enc.embed([w])[0] for w in waves])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)
    batch1 = load_model(f"hf:{hubert_ckpt}?chunk_sec={CHUNK_SEC}&batch_size=1")
    np.testing.assert_allclose(batch1.embed(waves), together, rtol=1e-5, atol=1e-6)
    assert auto_enc.embed([]).shape == (0, HIDDEN)


def test_chunking_equals_mean_of_separately_embedded_chunks(auto_enc: Encoder) -> None:
    wave = _wave(20, 3 * CHUNK)
    parts = [wave[i * CHUNK : (i + 1) * CHUNK] for i in range(3)]
    expected = auto_enc.embed(parts).mean(axis=0)
    np.testing.assert_allclose(auto_enc.embed([wave])[0], expected, rtol=1e-5, atol=1e-6)
    # a tail counts by its duration
    tail = 500
    wave = _wave(21, 2 * CHUNK + tail)
    parts = [wave[:CHUNK], wave[CHUNK : 2 * CHUNK], wave[2 * CHUNK :]]
    vecs = auto_enc.embed(parts)
    expected = (CHUNK * vecs[0] + CHUNK * vecs[1] + tail * vecs[2]) / (2 * CHUNK + tail)
    np.testing.assert_allclose(auto_enc.embed([wave])[0], expected, rtol=1e-5, atol=1e-6)
    # a tail shorter than the receptive field (40 samples) holds no frame and is dropped
    wave = _wave(22, CHUNK + 30)
    np.testing.assert_allclose(auto_enc.embed([wave]), auto_enc.embed([wave[:CHUNK]]), rtol=1e-6, atol=1e-7)


def test_mean_over_time_of_the_last_hidden_state_computed_independently(
    auto_enc: Encoder, hubert_ckpt: Path
) -> None:
    wave = _wave(30, CHUNK)
    model = transformers.HubertModel.from_pretrained(hubert_ckpt).eval()
    fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(hubert_ckpt)
    with torch.inference_mode():
        hidden = model(**fe([wave], sampling_rate=SR, return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(auto_enc.embed([wave])[0], hidden[0].mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)


def test_short_waveform_is_zero_padded_and_empty_raises(auto_enc: Encoder) -> None:
    short = _wave(40, 25)
    padded = np.pad(short, (0, 40 - 25))
    np.testing.assert_array_equal(auto_enc.embed([short]), auto_enc.embed([padded]))
    with pytest.raises(AudioDecodeError, match=r"waveform #1 .*empty waveform \(0 samples\)"):
        auto_enc.embed([short, np.zeros(0, dtype=np.float32)])
    with pytest.raises(AudioDecodeError, match="mono"):
        auto_enc.embed([np.zeros((2, 100), dtype=np.float32)])
    with pytest.raises(AudioDecodeError, match="NaN"):
        auto_enc.embed([np.full(100, np.nan, dtype=np.float32)])


def test_layer_choice_and_all_layer_average(hubert_ckpt: Path) -> None:
    spec = f"hf:{hubert_ckpt}?chunk_sec={CHUNK_SEC}"
    waves = [_wave(50, 2 * CHUNK + 100), _wave(51, 700)]
    per_layer = [load_model(f"{spec}&layer={i}").embed(waves) for i in range(N_LAYERS + 1)]
    all_avg = load_model(f"{spec}&layer=all")
    assert all_avg.info()["layer"] == "all"
    np.testing.assert_allclose(all_avg.embed(waves), np.mean(per_layer, axis=0), rtol=1e-5, atol=1e-6)
    # the layers differ, so the average is not trivially one of them
    assert not np.allclose(per_layer[0], per_layer[N_LAYERS], atol=1e-3)
    last = load_model(spec).embed(waves)
    np.testing.assert_allclose(per_layer[N_LAYERS], last, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(load_model(f"{spec}&layer=-1").embed(waves), last, rtol=1e-6, atol=1e-7)
    with pytest.raises(ModelError, match=r"layer=3 out of range .* valid 0\.\.2"):
        load_model(f"{spec}&layer=3")
    with pytest.raises(ModelError, match="layer='middle'"):
        load_model(f"{spec}&layer=middle")


def test_bad_options_and_bad_paths_are_model_errors(hubert_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"Unknown option for hf:.* 'chunk'\. Known: .*chunk_sec"):
        load_model(f"hf:{hubert_ckpt}?chunk=3")
    with pytest.raises(ModelError, match="chunk_sec='-1' must be a positive"):
        load_model(f"hf:{hubert_ckpt}?chunk_sec=-1")
    with pytest.raises(ModelError, match="below the model's minimum input of 40 samples"):
        load_model(f"hf:{hubert_ckpt}?chunk_sec=0.001")
    with pytest.raises(ModelError, match="float16.*only supported on CUDA"):
        load_model(f"hf:{hubert_ckpt}?dtype=float16&device=cpu")
    missing = tmp_path / "nope" / "ckpt"
    with pytest.raises(ModelError, match="does not exist"):
        load_model(f"hf:{missing}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ModelError, match=r"has no config\.json \(found: notes\.txt\)"):
        load_model(f"hf:{tmp_path / 'empty'}")


def test_hub_revisions_and_incomplete_cache(hub_cache: Path, tmp_path: Path, hub_offline: None) -> None:
    pinned = load_model(f"mert-v1-95m?cache_dir={hub_cache}&revision={FAKE_COMMIT}&chunk_sec={CHUNK_SEC}")
    assert pinned.info()["params"]["revision"] == FAKE_COMMIT
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_model(f"mert-v1-95m?cache_dir={hub_cache}&revision=v2")
    # config cached but the weights never arrived: say so instead of a bare transformers error
    repo = tmp_path / "models--m-a-p--MERT-v1-95M"
    snapshot = repo / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True)
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(hub_cache / "models--m-a-p--MERT-v1-95M" / "snapshots" / FAKE_COMMIT / name, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    with pytest.raises(ModelError, match="Cannot load the model of 'm-a-p/MERT-v1-95M' .*may be incomplete"):
        load_model(f"mert-v1-95m?cache_dir={tmp_path}")


def _tiny_other(kind: str, folder: Path) -> tuple[Any, Any]:
    """Save a tiny Wav2Vec2 (stable layer norm variant) or AST checkpoint; return (model class, FE class)."""
    torch.manual_seed(0)
    small = dict(hidden_size=HIDDEN, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=32)
    if kind == "wav2vec2":
        config = transformers.Wav2Vec2Config(
            **small, conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2, vocab_size=10, do_stable_layer_norm=True, feat_extract_norm="layer",
        )  # fmt: skip
        transformers.Wav2Vec2Model(config).save_pretrained(folder)
        transformers.Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True).save_pretrained(folder)
        return transformers.Wav2Vec2Model, transformers.Wav2Vec2FeatureExtractor
    config = transformers.ASTConfig(
        **small, patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=16, max_length=32
    )
    transformers.ASTModel(config).save_pretrained(folder)
    transformers.ASTFeatureExtractor(sampling_rate=16_000, num_mel_bins=16, max_length=32).save_pretrained(
        folder
    )
    return transformers.ASTModel, transformers.ASTFeatureExtractor


@pytest.mark.parametrize("kind", ["wav2vec2", "ast"])
def test_hf_other_architectures(kind: str, tmp_path: Path) -> None:
    model_cls, fe_cls = _tiny_other(kind, tmp_path / kind)
    enc = load_model(f"hf:{tmp_path / kind}?chunk_sec=0.25")  # AST's extractor takes 0.32 s (32 frames)
    assert enc.dim == HIDDEN and enc.sample_rate == 16_000
    chunk = 4000
    wave = _wave(80, 2 * chunk)
    halves = enc.embed([wave[:chunk], wave[chunk:]])
    np.testing.assert_allclose(enc.embed([wave])[0], halves.mean(axis=0), rtol=1e-5, atol=1e-6)
    model = model_cls.from_pretrained(tmp_path / kind).eval()
    fe = fe_cls.from_pretrained(tmp_path / kind)
    with torch.inference_mode():
        hidden = model(**fe([wave[:chunk]], sampling_rate=16_000, return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(halves[0], hidden[0].mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# mert-v1-95m: the real hub-id path, served from a local cache


def test_mert_loads_its_hub_id_from_the_local_cache(
    hub_cache: Path, hubert_ckpt: Path, hub_offline: None
) -> None:
    spec = f"mert-v1-95m?cache_dir={hub_cache}&chunk_sec={CHUNK_SEC}"
    mert = load_model(spec)
    assert mert.name == spec and mert.dim == HIDDEN and mert.sample_rate == SR
    info = mert.info()
    assert info["layer"] == "all"
    assert info["version"].endswith(f"m-a-p/MERT-v1-95M@{FAKE_COMMIT}")
    assert info["params"]["revision"] == FAKE_COMMIT and info["params"]["trust_remote_code"] is True
    assert info["weights_sha256"] == sha256_files([hubert_ckpt / "model.safetensors"])
    waves = [_wave(60, 2 * CHUNK), _wave(61, 333)]
    same_from_folder = load_model(f"hf:{hubert_ckpt}?chunk_sec={CHUNK_SEC}&layer=all")
    np.testing.assert_array_equal(mert.embed(waves), same_from_folder.embed(waves))
    # model_id= points the named backend at a local folder, layer= picks one hidden state
    local = load_model(f"mert-v1-95m?model_id={hubert_ckpt}&layer=1&chunk_sec={CHUNK_SEC}")
    assert local.info()["layer"] == "1" and local.info()["params"]["revision"] is None


_CUSTOM_CONFIG = """from transformers import HubertConfig


class MERTConfig(HubertConfig):
    model_type = "mert_model"
"""
_CUSTOM_MODEL = """from transformers import HubertModel

from .configuration_MERT import MERTConfig


class MERTModel(HubertModel):
    config_class = MERTConfig
"""


def test_mert_runs_modelling_code_shipped_with_the_checkpoint(
    hubert_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint laid out like MERT's (config.json auto_map -> its own .py files) loads through the real
    trust_remote_code path; the code here is a HuBERT subclass, so the result equals plain HuBERT's."""
    import sys

    from transformers import dynamic_module_utils

    folder = tmp_path / "mert_like"
    shutil.copytree(hubert_ckpt, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="mert_model", architectures=["MERTModel"],
        auto_map={"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
    )  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_MERT.py").write_text(_CUSTOM_CONFIG)
    (folder / "modeling_MERT.py").write_text(_CUSTOM_MODEL)
    # keep the dynamic modules out of the user's cache and out of later tests' import state
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = {k for k in sys.modules if k.startswith("transformers_modules")}
    try:
        with pytest.raises(ModelError, match="add trust_remote_code=1"):
            load_model(f"hf:{folder}")  # no prompt on stdin: refused at once
        mert = load_model(f"mert-v1-95m?model_id={folder}&chunk_sec={CHUNK_SEC}")
        assert isinstance(mert, hf.HiddenStateEncoder) and type(mert.model).__name__ == "MERTModel"
        waves = [_wave(90, 2 * CHUNK + 50)]
        plain = load_model(f"hf:{hubert_ckpt}?chunk_sec={CHUNK_SEC}&layer=all")
        np.testing.assert_array_equal(mert.embed(waves), plain.embed(waves))
        assert load_model(f"hf:{folder}?trust_remote_code=1").dim == HIDDEN
    finally:
        for key in [k for k in sys.modules if k.startswith("transformers_modules") and k not in before]:
            del sys.modules[key]


# ----------------------------------------------------------------------------------------------------------------
# no network: fail fast with a message that says what to do


def _assert_offline_error(call, *must_contain: str) -> str:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < FAIL_FAST_SEC, f"took {elapsed:.1f} s"
    message = str(info.value)
    for text in must_contain:
        assert text in message, message
    return message


def test_offline_hub_ids_fail_fast_with_a_local_copy_hint(tmp_path: Path, hub_offline: None) -> None:
    hints = ("hf:/path/to/local/checkpoint", "HF_HOME", "HF_HUB_OFFLINE=1")
    _assert_offline_error(
        lambda: load_model(f"mert-v1-95m?cache_dir={tmp_path}"), "m-a-p/MERT-v1-95M", *hints
    )
    _assert_offline_error(
        lambda: load_model(f"clap-music?cache_dir={tmp_path}"), "laion/larger_clap_music", *hints
    )
    _assert_offline_error(
        lambda: load_model(f"hf:nobody/no-such-model-xyz?cache_dir={tmp_path}"),
        "nobody/no-such-model-xyz",
        *hints,
    )


def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    with socket.socket() as sock:  # a loopback port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    _assert_offline_error(
        lambda: load_model(f"hf:nobody/bogus-id?cache_dir={tmp_path}"),
        "unreachable", f"127.0.0.1:{port}", "hf:/path/to/local/checkpoint",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# clap-music


def test_clap_embeds_chunks_with_get_audio_features(clap_ckpt: Path) -> None:
    clap = load_model(f"clap-music?model_id={clap_ckpt}&chunk_sec=0.5&device=cpu")
    assert clap.dim == 12 and clap.sample_rate == 48_000
    chunk = 24_000
    wave = _wave(70, 2 * chunk)
    out = clap.embed([wave, _wave(71, 10_000)])
    assert out.shape == (2, 12) and out.dtype == np.float32 and np.isfinite(out).all()
    # one chunk: the normalised projected audio embedding, computed here independently
    model = transformers.ClapModel.from_pretrained(clap_ckpt).eval()
    fe = transformers.ClapFeatureExtractor.from_pretrained(clap_ckpt)
    with torch.inference_mode():
        feats = model.get_audio_features(**fe([wave[:chunk]], sampling_rate=48_000, return_tensors="pt"))
    vectors = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
    direct = torch.nn.functional.normalize(vectors.float(), dim=-1)[0].numpy()
    np.testing.assert_allclose(clap.embed([wave[:chunk]])[0], direct, rtol=1e-5, atol=1e-6)
    assert abs(np.linalg.norm(direct) - 1.0) < 1e-5
    # two chunks: their mean
    halves = clap.embed([wave[:chunk], wave[chunk:]])
    np.testing.assert_allclose(clap.embed([wave])[0], halves.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(clap.embed([wave]), clap.embed([wave]))
    info = clap.info()
    assert info["layer"] is None and info["pooling"] == "mean"
    assert info["weights_sha256"] == sha256_files([clap_ckpt / "model.safetensors"])
    assert info["params"]["sample_rate"] == 48_000 and info["params"]["chunk_sec"] == 0.5


def test_clap_with_a_fusion_feature_extractor_on_an_unfused_model(clap_ckpt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "clap_fusion"
    shutil.copytree(clap_ckpt, folder)
    fe = transformers.ClapFeatureExtractor.from_pretrained(clap_ckpt)
    fe.truncation = "fusion"
    fe.save_pretrained(folder)
    clap = load_model(f"clap-music?model_id={folder}&chunk_sec=0.5")
    wave = _wave(72, 24_000)
    model = transformers.ClapModel.from_pretrained(folder).eval()
    feats = fe([wave], sampling_rate=48_000, return_tensors="pt")
    assert feats["input_features"].shape[1] == 4  # four stacked copies: the unfused model takes one
    with torch.inference_mode():
        out = model.get_audio_features(input_features=feats["input_features"][:, :1])
    vectors = out if isinstance(out, torch.Tensor) else out.pooler_output
    direct = torch.nn.functional.normalize(vectors.float(), dim=-1)[0].numpy()
    np.testing.assert_allclose(clap.embed([wave])[0], direct, rtol=1e-5, atol=1e-6)


def test_clap_rejects_layer_and_overlong_chunks(clap_ckpt: Path) -> None:
    with pytest.raises(ModelError, match=r"Unknown option for clap-music 'layer'"):
        load_model(f"clap-music?model_id={clap_ckpt}&layer=3")
    with pytest.raises(ModelError, match=r"chunk_sec=2\.0 exceeds CLAP's input length of 1\.0 s"):
        load_model(f"clap-music?model_id={clap_ckpt}&chunk_sec=2")


def test_hub_probe_is_not_used_for_local_folders(hubert_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("a local checkpoint must not touch the hub")

    monkeypatch.setattr(hf, "_probe_hub", boom)
    assert load_model(f"hf:{hubert_ckpt}").dim == HIDDEN
