"""Fusion of registry models (fusion:<spec>+<spec>): one L2-normalised block per member, the block sizes
recorded, and block_standardize giving every block the same total variance whatever its dimension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research_job.embeddings import fit_postprocess, load_embeddings, transform
from research_job.errors import ConfigError, ModelError
from research_job.models.registry import check_spec, load_model
from research_job.steps import embed
from research_job.steps.embed import EmbedConfig
from tests.unit._audio_corpus import make_audio_corpus

SPEC = "fusion:random?dim=8+random?seed=1&dim=3"


def test_members_are_unit_blocks_side_by_side() -> None:
    enc = load_model(SPEC)
    waves = [np.random.default_rng(i).standard_normal(16000).astype(np.float32) for i in range(3)]
    v = enc.embed(waves)
    assert v.shape == (3, 11) and enc.dim == 11 and enc.sample_rate == 16000
    np.testing.assert_allclose(np.linalg.norm(v[:, :8], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(v[:, 8:], axis=1), 1.0, rtol=1e-6)
    first = load_model("random?dim=8").embed(waves)
    np.testing.assert_allclose(v[:, :8], first / np.linalg.norm(first, axis=1, keepdims=True), rtol=1e-6)
    assert enc.info()["params"]["blocks"] == [8, 3] and enc.name == SPEC


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("fusion:random", "two or more models"),
        ("fusion:random+nosuch", "Unknown model 'nosuch'"),
        ("fusion:random+fusion:random+random", "cannot contain another fusion"),
        ("fusion:random+musicnn-msd?layer=pool", "'pool'"),
    ],
)
def test_bad_fusion_specs_are_refused_before_loading(spec: str, said: str) -> None:
    with pytest.raises(ModelError, match=said):
        check_spec(spec)


def test_members_must_share_a_sample_rate() -> None:
    with pytest.raises(ModelError, match="share one sample rate"):
        load_model("fusion:random+dsp-stats")


def test_block_standardize_equalises_block_variance() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal((500, 40)) * 3.0, rng.standard_normal((500, 4)) * 0.1], axis=1)
    y = transform(x, fit_postprocess(x, "block_standardize", [40, 4]))
    total = [y[:, :40].var(axis=0).sum(), y[:, 40:].var(axis=0).sum()]
    np.testing.assert_allclose(total, [1.0, 1.0], rtol=1e-9)
    with pytest.raises(ConfigError, match="do not add up"):
        fit_postprocess(x, "block_standardize", [40, 3])


def test_embed_a_fusion_with_block_standardize(tmp_path: Path) -> None:
    common = make_audio_corpus(tmp_path, n=6, seconds=2.0, model=SPEC)
    meta = embed.run(EmbedConfig(common=common, postprocess="block_standardize"))
    assert (
        meta["model"]["name"] == SPEC
        and meta["dim"] == 11
        and meta["postprocess"]["type"] == "block_standardize"
    )
    vectors, _, _ = load_embeddings(common.layout)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_standardize_knows_a_fusions_rate_without_loading_it() -> None:
    from research_job.config import CommonConfig
    from research_job.steps.standardize_audio import StandardizeAudioConfig, resolve_sample_rate

    cfg = StandardizeAudioConfig(common=CommonConfig(model="fusion:musicnn-msd+musicnn-mtt?layer=max_pool"))
    assert resolve_sample_rate(cfg) == (16000, "model_table")


class _Framer:
    """A frame encoder whose layer ``a`` (dim 2) and ``b`` (dim 1) per 1 s frame are known constants."""

    sample_rate, frame_sec, hop_sec = 16000, 1.0, 1.0

    def __init__(self, tag: float, layers: dict[str, int] | None = None) -> None:
        self.tag, self.name, self.dim = tag, f"framer{tag}", 2
        self.frame_layers = layers or {"a": 2, "b": 1}

    def _frames(self, w: np.ndarray, layers: list[str]) -> np.ndarray:
        t = max(1, w.size // self.sample_rate)
        cols = {"a": [self.tag, self.tag + 0.1], "b": [self.tag + 0.5]}
        return np.tile(np.concatenate([cols[n] for n in layers]), (t, 1)).astype(np.float32)

    def embed(self, batch: list[np.ndarray]) -> np.ndarray:
        return np.array([[self.tag, 1.0]] * len(batch), np.float32)

    def embed_frames(self, batch: list[np.ndarray], layers: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.embed(batch), [self._frames(w, list(layers)) for w in batch]

    def info(self) -> dict[str, object]:
        return {"name": self.name, "version": "1", "weights_sha256": None, "pooling": "mean", "layer": "a"}


def test_a_fusion_of_frame_encoders_fuses_each_layer_side_by_side() -> None:
    from research_job.models.base import FrameEncoder
    from research_job.models.fusion import FusionEncoder

    enc = FusionEncoder([_Framer(1.0), _Framer(2.0)])
    assert isinstance(enc, FrameEncoder) and enc.frame_layers == {"a": 4, "b": 2}
    waves = [np.zeros(16000 * 3, np.float32), np.zeros(16000, np.float32)]
    pooled, frames = enc.embed_frames(waves, ["b", "a"])
    np.testing.assert_allclose(pooled, enc.embed(waves))
    assert [f.shape for f in frames] == [(3, 6), (1, 6)]
    # layer b of both members, then layer a of both: the columns frames_meta records for ["b", "a"]
    np.testing.assert_allclose(frames[0][0], [1.5, 2.5, 1.0, 1.1, 2.0, 2.1], rtol=1e-6)
    with pytest.raises(ModelError, match=r"'c'.*a, b|'c'.*\['a', 'b'\]"):
        enc.embed_frames(waves, ["c"])


def test_a_fusion_has_only_the_frame_layers_every_member_has() -> None:
    from research_job.models.fusion import FusionEncoder

    assert FusionEncoder([_Framer(1.0), _Framer(2.0, {"a": 2})]).frame_layers == {"a": 4}
    assert FusionEncoder([_Framer(1.0), load_model("random?dim=3")]).frame_layers == {}


def test_musicnn_members_share_the_log_mel_and_one_checkpoints_forward_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both checkpoints take the same log-mel patches (computed once per batch) and two layers of one checkpoint
    the same forward pass; the fused vectors and frames are those of each member run alone."""
    from research_job.models.musicnn import MusicnnEncoder

    enc = load_model("fusion:musicnn-msd+musicnn-mtt+musicnn-msd?layer=max_pool")
    rng = np.random.default_rng(3)
    waves = [(0.1 * rng.standard_normal(16000 * s)).astype(np.float32) for s in (7, 4)]
    alone = [m.embed_frames(waves, ["taggram"]) for m in enc.members]
    calls = {"front_end": 0, "network": 0}
    for name in calls:
        original = getattr(MusicnnEncoder, name)

        def counted(self, x, _name=name, _original=original):  # noqa: ANN001, ANN202
            calls[_name] += 1
            return _original(self, x)

        monkeypatch.setattr(MusicnnEncoder, name, counted)
    pooled, frames = enc.embed_frames(waves, ["taggram"])
    assert calls == {"front_end": 1, "network": 2}
    blocks = np.cumsum([0, *enc.blocks])
    for i, (p, _) in enumerate(alone):
        p64 = p.astype(np.float64)  # the fusion's block normalisation (float64, then float32)
        want = (p64 / np.linalg.norm(p64, axis=1, keepdims=True)).astype(np.float32)
        np.testing.assert_array_equal(pooled[:, blocks[i] : blocks[i + 1]], want)
    for w in range(len(waves)):
        np.testing.assert_array_equal(frames[w], np.concatenate([f[w] for _, f in alone], axis=1))
    np.testing.assert_array_equal(enc.embed(waves), pooled)
    assert calls == {"front_end": 2, "network": 4}
