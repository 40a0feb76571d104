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
