"""A seeded listening log with planted tastes, and the recommenders trained on it, for a factory version folder.

:func:`listening_log` gives listener ``u`` a taste for the tracks of ``composer u % 4`` (plays, some likes) and a
few skips elsewhere; :func:`add_recs` writes it as a CSV, runs the real ``export-interactions`` and a small,
fast ``train-recs`` (8 factors, 10 iterations, 100 bootstrap resamples) through the CLI, and returns the CSV.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner

from research_job.cli import cli
from tests.helpers.artifact_factory import Corpus

COLUMNS = ["user_id", "track_id", "event", "ts", "duration_sec", "origin"]


def listening_log(corpus: Corpus, n_users: int = 40, seed: int = 0) -> list[list[Any]]:
    """Planted tastes: listener u likes the tracks of composer u % 4, plays a few others and skips them."""
    rng = np.random.default_rng(seed)
    comp = [r["composer"] for r in corpus.rows]
    out: list[list[Any]] = []
    for u in range(n_users):
        mine = [i for i, c in enumerate(comp) if c == f"composer {u % 4}"]
        other = [i for i, c in enumerate(comp) if c is not None and c != f"composer {u % 4}"]
        day = int(rng.integers(1, 5))
        for j, i in enumerate(rng.choice(mine, size=min(len(mine), 10), replace=False)):
            ts = f"2026-0{1 + (day + j) // 28}-{1 + (day + j) % 28:02d}T1{j % 10}:00:00Z"
            out.append([f"u{u:03d}", corpus.track_ids[int(i)], "play", ts, "30", "synthetic-test"])
            if j % 3 == 0:
                out.append([f"u{u:03d}", corpus.track_ids[int(i)], "like", ts, "", "synthetic-test"])
        for j, i in enumerate(rng.choice(other, size=3, replace=False)):
            ts = f"2026-03-{1 + j:02d}T08:00:00Z"
            out.append([f"u{u:03d}", corpus.track_ids[int(i)], "skip", ts, "4", "synthetic-test"])
    return out


def cli_ok(*args: str) -> str:
    """Run a research-job command in-process; its output (the test fails on a non-zero exit)."""
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def train(vdir: str | Path) -> None:
    """train-recs with a small, fast configuration (8 factors, 10 iterations, 100 bootstrap resamples)."""
    cli_ok("train-recs", "--version-dir", str(vdir), "--factors", "8", "--iterations", "10",
           "--bootstrap-resamples", "100")  # fmt: skip


def add_recs(corpus: Corpus, csv_path: Path, n_users: int = 40) -> Path:
    """Write the planted log to ``csv_path``, export it and train the recommenders in the corpus' folder."""
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(listening_log(corpus, n_users))
    vdir = str(corpus.layout.version_dir)
    cli_ok("export-interactions", "--version-dir", vdir, "--csv-path", str(csv_path))
    train(vdir)
    return csv_path
