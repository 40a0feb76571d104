"""The report's drawing primitives and its sections made from other steps' artifacts (each optional).

* index (``index/index_meta.json``, build-index): each index's recall@5 / @10 against exact search at its
  ``ef_search``, build time and size;
* model comparison (compare-models' ``comparison.json``): every model's P@k with its bootstrap CI and random floor;
* trained head (``head/head_meta.json`` + ``head/curves.json``, train-head): training loss and validation metric
  per epoch, and the head's validation metric against the frozen backbone's;
* cluster tags (``embeddings/tags.{f32,json}``, embed with a tagging model): the tags each KMeans cluster scores
  above the catalogue (:func:`research_job.embedding_analysis.cluster_tags`).

Each ``*_section`` function returns a :class:`Section`: its ``report.json`` block (or ``{"skipped": reason}`` when
its inputs are missing or belong to other embeddings or another corpus), its figures and its HTML. Figures are
matplotlib's Agg canvas (no pyplot state); every text from an artifact is HTML-escaped; tables are pandas'.
"""

from __future__ import annotations

import html
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from research_job import schema
from research_job.errors import ArtifactError
from research_job.layout import ArtifactLayout
from research_job.metrics import METRICS

LOG = logging.getLogger(__name__)

#: tag vocabularies the report prefers, best first: MagnaTagATune's tags name instruments, voices and moods
#: (strings, choir, harpsichord, slow), the Million Song Dataset's last.fm tags mostly pop genres and decades
PREFERRED_VOCABULARIES = ("MagnaTagATune",)
#: tags listed per cluster
TOP_TAGS = 5
ROLE_COLOURS = {
    "candidate": "#1f77b4",
    "dsp_baseline": "#7f7f7f",
    "classic_baseline": "#9467bd",
    "random_floor": "#c7c7c7",
}
THIS_VERSION_COLOUR = "#ff7f0e"
METRIC_LABELS = {
    "precision_at_k": "P@{k}",
    "hit_rate_at_k": "HitRate@{k}",
    "ndcg_at_k": "NDCG@{k}",
    "mrr": "MRR",
}


# --- drawing primitives (shared with research_job.report) ---


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (no software tag, so the bytes depend on the data only)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight")
    return buf.getvalue()


def figure(w: float, h: float, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib figure on its own Agg canvas and its axes (one, or an array of ``ncols``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols) if ncols > 1 else fig.subplots()


def error_bars(m: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """matplotlib's (2, n) error extents of a value and its interval. A percentile bootstrap interval of a few
    queries need not contain the mean (and rounding can put it a hair outside): the bar then ends at the mean."""
    return np.stack([np.clip(m - lo, 0.0, None), np.clip(hi - m, 0.0, None)])


def table(df: Any) -> str:
    """A pandas DataFrame as an HTML table, every cell escaped, floats with 3 decimals."""
    return str(df.to_html(escape=True, border=0, index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))


def data_uri_img(name: str, data: bytes, alt: str) -> str:
    """An ``<img>`` of PNG bytes inlined as a ``data:`` URI."""
    import base64

    return (
        f'<figure><img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" '
        f'alt="{html.escape(alt)}"></figure>'
    )


@dataclass
class Section:
    """One optional section: its report.json block, figures (name -> PNG bytes) and HTML (figures inlined)."""

    key: str
    block: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)
    html: str = ""


def skipped(key: str, title: str, reason: str) -> Section:
    """A section that could not be made, with the reason on the page and in report.json."""
    LOG.info("report: %s section skipped: %s", key, reason)
    return Section(
        key, {"skipped": reason}, {}, f"<h2>{html.escape(title)}</h2><p>Skipped: {html.escape(reason)}</p>"
    )


def _page(title: str, body: list[str], figures: dict[str, bytes], alts: dict[str, str]) -> str:
    imgs = [data_uri_img(n, figures[n], alts[n]) for n in figures]
    return "\n".join([f"<h2>{html.escape(title)}</h2>", *body, *imgs])


# --- index (build-index) ---


def index_section(layout: ArtifactLayout, embeddings_sha256: str) -> Section:
    """Recall, build time and size of each index of ``index_meta.json`` (skipped without one of these embeddings)."""
    title = "Index"
    path = layout.index_meta
    if not path.is_file():
        return skipped("index", title, f"no {path.name}: run `research-job build-index`")
    meta = schema.read_artifact(path, "index_meta")
    if meta["embeddings_sha256"] != embeddings_sha256:
        return skipped("index", title, f"{path.name} is of other embeddings ({meta['embeddings_sha256'][:12]}... "
                       f"!= {embeddings_sha256[:12]}...): rerun `research-job build-index`")  # fmt: skip
    rows = []
    for e in meta["indexes"]:
        p = e["params"]
        rows.append(
            {"name": e["name"], "library": f"{e['library']} {e['library_version']}", "type": e["type"],
             "exact": bool(e["exact"]), "M": p.get("M"), "ef_construction": p.get("ef_construction"),
             "ef_search": p.get("ef_search"), "build_sec": float(e["build_sec"]), "size_bytes": int(e["size_bytes"]),
             "recall_at_5": e["recall_at_5"], "recall_at_10": e.get("recall_at_10")}
        )  # fmt: skip
    nb = meta.get("neighbors")
    block = {
        "count": int(meta["count"]),
        "dim": int(meta["dim"]),
        "recall_queries": int(meta["recall_queries"]),
        "indexes": rows,
        "neighbors": None
        if nb is None
        else {
            "k": int(nb["k"]),
            "ranking": nb["ranking"],
            "build_sec": float(nb["build_sec"]),
            "size_bytes": int(nb["size_bytes"]),
        },  # fmt: skip
        "recall_ladder": None,
        "note": (
            "index_meta.json records each ANN index's recall at one ef_search, the one build-index settled on "
            "(doubling from its configured value until recall@5 reaches its target); the values tried on the way "
            "are not recorded, so the figure shows one point per index, not a recall-against-ef curve"
        ),
    }
    figs = {"index.png": _fig_index(block)}
    import pandas as pd

    df = pd.DataFrame(rows)
    df["size MiB"] = df.pop("size_bytes") / 2**20
    body = [
        f"<p>{block['count']} vectors of {block['dim']} dims; recall against exact search (self excluded) over "
        f"{block['recall_queries']} queries. {html.escape(str(block['note']))}.</p>",
        table(df),
    ]
    if nb is not None:
        body.append(
            f"<p>Exact neighbour table: top-{nb['k']} of every track ({html.escape(nb['ranking'])}), built in "
            f"{nb['build_sec']:.2f} s, {nb['size_bytes'] / 2**20:.2f} MiB.</p>"
        )
    return Section(
        "index", block, figs, _page(title, body, figs, {"index.png": "index recall, build time, size"})
    )


def _fig_index(block: dict[str, Any]) -> bytes:
    fig, (a1, a2, a3) = figure(12, 3.4, ncols=3)
    rows = block["indexes"]
    ann = [r for r in rows if not r["exact"] and r["recall_at_5"] is not None]
    colours = [f"C{i}" for i in range(len(rows))]
    lows = []
    for j, (r, c) in enumerate(zip(rows, colours, strict=True)):
        if r not in ann:
            continue
        # indexes at one ef_search side by side (a small offset on the log axis), so that none hides another
        ef = r["ef_search"] * 2 ** (0.12 * (j - (len(rows) - 1) / 2))
        a1.scatter([ef], [r["recall_at_5"]], color=c, marker="o", s=50, label=f"{r['name']} @5")
        if r["recall_at_10"] is not None:
            a1.scatter([ef], [r["recall_at_10"]], color=c, marker="s", facecolors="none", s=50,
                       label=f"{r['name']} @10")  # fmt: skip
            lows.append(r["recall_at_10"])
        lows.append(r["recall_at_5"])
    if ann:
        a1.set_xscale("log", base=2)
        efs = [r["ef_search"] for r in ann]
        a1.set_xlim(min(efs) / 2, max(efs) * 2)
        a1.set_ylim(max(0.0, min(lows) - 0.05), 1.005)
        a1.legend(fontsize=7, loc="lower right")
    else:
        a1.text(0.5, 0.5, "no ANN index", ha="center", va="center", transform=a1.transAxes)
    a1.set_xlabel("ef_search (one recorded value per index)")
    a1.set_ylabel("recall vs exact search")
    a1.set_title(f"Recall ({block['recall_queries']} queries)", fontsize=10)
    names = [r["name"] for r in rows]
    build = [r["build_sec"] for r in rows]
    size = [r["size_bytes"] / 2**20 for r in rows]
    if block["neighbors"] is not None:
        names.append(f"neighbors k={block['neighbors']['k']}")
        build.append(block["neighbors"]["build_sec"])
        size.append(block["neighbors"]["size_bytes"] / 2**20)
        colours.append("#7f7f7f")
    y = np.arange(len(names))
    a2.barh(y, build, color=colours)
    a2.set_yticks(y, names, fontsize=8)
    a2.invert_yaxis()
    a2.set_xlabel("build seconds")
    a2.set_title("Build time", fontsize=10)
    a3.barh(y, size, color=colours)
    a3.set_yticks(y, names, fontsize=8)
    a3.invert_yaxis()
    raw = block["count"] * block["dim"] * 4 / 2**20
    a3.axvline(raw, color="black", linestyle="--", linewidth=1, label=f"raw vectors {raw:.3g} MiB")
    a3.set_xlabel("MiB")
    a3.set_title("Size", fontsize=10)
    a3.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return png(fig)


# --- model comparison (compare-models) ---


def own_label(model: str, postprocess: str) -> str:
    """This version's label in a comparison (compare-models' ``SPEC[#POSTPROCESS]``)."""
    return model if postprocess == "none" else f"{model}#{postprocess}"


def comparison_section(path: Path | None, metadata_sha256: str, label: str) -> Section:
    """compare-models' table and P@k chart (skipped without a file, or for a file of another corpus).

    Args:
        path: the comparison.json (None: none asked for or found); metadata_sha256: this version's
            tracks_metadata.csv; label: this version's ``model#postprocess``, highlighted when a row has it.

    Raises:
        SchemaValidationError: the file does not match model_comparison.schema.json.
    """
    title = "Model comparison"
    if path is None:
        return skipped("comparison", title, "no comparison.json: run `research-job compare-models` (or pass "
                       "--comparison PATH)")  # fmt: skip
    res = schema.read_artifact(path, "model_comparison")
    if res["metadata_sha256"] != metadata_sha256:
        reason = (f"{path} compares models on another corpus (its metadata_sha256 {res['metadata_sha256'][:12]}... "
                  f"is not this version's tracks_metadata.csv {metadata_sha256[:12]}...)")  # fmt: skip
        LOG.warning("report: %s", reason)
        return skipped("comparison", title, reason)
    k = int(res["k"])
    rows = []
    for r in res["rows"]:
        m = r["metrics"]
        rows.append(
            {"rank": r["rank"], "label": r["label"], "role": r["role"], "status": r["status"],
             "this_version": r["label"] == label,
             "metrics": {key: dict(m[key]) for key in METRICS} if m else None,
             "precision_no_album": dict(r["exclude_same_album"]["precision_at_k"]) if r["exclude_same_album"] else None,
             "dim": r["dim"], "sec_per_track": r["sec_per_track"], "x_realtime": r["x_realtime"],
             "peak_memory_bytes": r["peak_memory_bytes"], "error": r["error"]}
        )  # fmt: skip
    block = {
        "path": str(path),
        "k": k,
        "n_tracks": int(res["n_tracks"]),
        "n_entries": int(res["n_entries"]),
        "n_failed": int(res["n_failed"]),
        "bootstrap_resamples": int(res["bootstrap_resamples"]),
        "created_at": res["created_at"],
        "this_version": label if any(r["this_version"] for r in rows) else None,
        "rows": rows,
    }
    ok = [r for r in rows if r["metrics"] is not None]
    figs = {"comparison.png": _fig_comparison(ok, k)} if ok else {}
    body = [
        f"<p>compare-models on this corpus ({block['n_tracks']} tracks, {res['created_at']}): each model embedded "
        f"and evaluated the same way; cells are the metric, its 95% bootstrap CI ({block['bootstrap_resamples']} "
        f"resamples) and the exact random-ranking expectation. "
        + (
            f"This version ({html.escape(label)}) is highlighted."
            if block["this_version"]
            else f"This version ({html.escape(label)}) is not one of its rows."
        )  # fmt: skip
        + "</p>",
        table(_comparison_frame(rows, k)),
    ]
    alts = {"comparison.png": "P@k of every compared model with confidence intervals and random floor"}
    return Section("comparison", block, figs, _page(title, body, figs, alts))


def _comparison_frame(rows: list[dict[str, Any]], k: int) -> Any:
    import pandas as pd

    def cell(c: dict[str, Any] | None) -> str:
        if c is None:
            return ""
        ci = f" [{c['ci_low']:.3f}, {c['ci_high']:.3f}]" if c["ci_low"] is not None else ""
        return f"{c['value']:.3f}{ci} ({c['random']:.3f})"

    out = []
    for r in rows:
        m = r["metrics"] or {}
        out.append(
            {"rank": r["rank"], "model": r["label"] + (" (this version)" if r["this_version"] else ""),
             "role": r["role"], **{METRIC_LABELS[key].format(k=k): cell(m.get(key)) for key in METRICS},
             f"P@{k} no album": cell(r["precision_no_album"]), "dim": r["dim"], "s/track": r["sec_per_track"],
             "x real time": r["x_realtime"],
             "peak MiB": None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / 2**20,
             "status": r["status"] if r["status"] == "ok" else f"failed: {r['error']}"}
        )  # fmt: skip
    return pd.DataFrame(out)


def _fig_comparison(rows: list[dict[str, Any]], k: int) -> bytes:
    fig, ax = figure(7.5, 0.6 + 0.38 * len(rows))
    m = np.array([r["metrics"]["precision_at_k"]["value"] for r in rows])
    lo = np.array([_or(r["metrics"]["precision_at_k"]["ci_low"], v) for r, v in zip(rows, m, strict=True)])
    hi = np.array([_or(r["metrics"]["precision_at_k"]["ci_high"], v) for r, v in zip(rows, m, strict=True)])
    floor = [r["metrics"]["precision_at_k"]["random"] for r in rows]
    y = np.arange(len(rows))
    colours = [THIS_VERSION_COLOUR if r["this_version"] else ROLE_COLOURS[r["role"]] for r in rows]
    ax.barh(y, m, xerr=error_bars(m, lo, hi), capsize=3, color=colours)
    ax.scatter(floor, y, marker="|", s=300, color="black", zorder=3, label="random floor (exact expectation)")
    ax.set_yticks(
        y, [r["label"] + (" (this version)" if r["this_version"] else "") for r in rows], fontsize=8
    )
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"P@{k} (95% bootstrap CI)")
    ax.set_title(f"compare-models: P@{k} by model (grey: baselines)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return png(fig)


def _or(v: float | None, default: float) -> float:
    return default if v is None else float(v)


# --- trained head (train-head) ---


def head_section(layout: ArtifactLayout, model: str) -> Section:
    """Training curves and frozen-vs-head figures of a head version folder (skipped in other folders)."""
    title = "Trained head"
    meta_p, curves_p = layout.head_meta, layout.head_curves_json
    missing = [p.name for p in (meta_p, curves_p) if not p.is_file()]
    if len(missing) == 2:
        return skipped("head", title, f"not a head version folder (no head/{meta_p.name}): `research-job "
                       "train-head` writes one")  # fmt: skip
    if missing:
        return skipped(
            "head", title, f"head/{missing[0]} is missing beside the other head file: rerun train-head"
        )
    meta = schema.read_artifact(meta_p, "head_meta")
    curves = schema.read_artifact(curves_p, "head_curves")
    if meta["model_name"] != model:
        return skipped("head", title, f"head/{meta_p.name} is of the model {meta['model_name']!r}, the embeddings "
                       f"of {model!r}: rerun train-head")  # fmt: skip
    mt, sp = meta["metrics"], meta["split"]
    block = {
        "name": meta["name"],
        "objective": meta["objective"],
        "architecture": meta["architecture"],
        "label": meta["label"],
        "backbone": meta["backbone"]["model"]["name"],
        "metric": mt["name"],
        "frozen": float(mt["frozen"]),
        "head": float(mt["best"]),
        "difference": float(mt["best"]) - float(mt["frozen"]),
        "best_epoch": int(mt["best_epoch"]),
        "epochs_run": int(mt["epochs_run"]),
        "stopped_early": bool(mt["stopped_early"]),
        "split": {"by": sp["by"], **{s: int(sp["counts"][s]) for s in ("train", "val", "test")}},
        "n_params": int(meta["n_params"]),
        "train_sec": float(meta["train_sec"]),
    }
    figs = {"head_curves.png": _fig_head(curves)}
    import pandas as pd

    versus = pd.DataFrame(
        [{"validation metric": f"{mt['name']} ({block['split']['val']} val tracks, split by {sp['by']})",
          "frozen backbone": block["frozen"], f"head (best epoch {block['best_epoch']})": block["head"],
          "difference": block["difference"]}]
    )  # fmt: skip
    facts = pd.DataFrame(
        [{"head": meta["name"], "objective": meta["objective"], "architecture": meta["architecture"],
          "backbone": block["backbone"], "tracks train / val / test": f"{block['split']['train']} / "
          f"{block['split']['val']} / {block['split']['test']}", "parameters": block["n_params"],
          "epochs run": block["epochs_run"], "stopped early": block["stopped_early"],
          "train seconds": block["train_sec"]}]
    )  # fmt: skip
    body = [
        "<p>The head's validation metric (train-head's early-stopping figure, among the validation tracks) against "
        "the same metric of the frozen backbone's pooled frames (head/head_meta.json).</p>",
        table(versus),
        table(facts),
    ]
    alts = {"head_curves.png": "training loss and validation metric per epoch"}
    return Section("head", block, figs, _page(title, body, figs, alts))


def _fig_head(curves: dict[str, Any]) -> bytes:
    from matplotlib.ticker import MaxNLocator

    ep = curves["epochs"]
    x = [e["epoch"] for e in ep]
    fig, (a1, a2) = figure(10, 3.2, ncols=2)
    a1.plot(x, [e["train_loss"] for e in ep], marker=".", color="#1f77b4")
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    a1.set_title("Training loss", fontsize=10)
    a2.plot(x, [e["val_metric"] for e in ep], marker=".", color="#2ca02c", label="head")
    a2.axhline(curves["frozen_metric"], color="grey", linestyle="--", label="frozen backbone")
    a2.axvline(
        curves["best_epoch"],
        color="black",
        linestyle=":",
        linewidth=1,
        label=f"best epoch {curves['best_epoch']}",
    )
    a2.set_ylim(0, 1.02)
    for ax in (a1, a2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    a2.set_xlabel("epoch")
    a2.set_ylabel(curves["metric"])
    a2.set_title(f"Validation {curves['metric']}", fontsize=10)
    a2.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


# --- cluster tags (embed with a tagging model) ---


def pick_block(tags_meta: dict[str, Any]) -> int:
    """The tag block the report uses: the first of a preferred vocabulary, else the first."""
    blocks = tags_meta["blocks"]
    for vocab in PREFERRED_VOCABULARIES:
        for i, b in enumerate(blocks):
            if b["vocabulary"] == vocab:
                return i
    return 0


def tags_section(layout: ArtifactLayout, clusters: dict[str, Any] | None, all_ids: list[str]) -> Section:
    """The top tags of every KMeans cluster of ``clusters`` (clusters.json's dict, given ``top_tags`` here).

    Raises:
        ArtifactError: tag files that do not match each other or the track rows (see :func:`load_tags`).
    """
    from research_job import embedding_analysis as EA
    from research_job.tags import load_tags

    title = "Tags of the clusters"
    if clusters is None:
        return skipped("tags", title, "no clustering (the labels define none)")
    if not layout.path("tags_meta").is_file():
        return skipped("tags", title, f"no embeddings/{layout.path('tags_meta').name}: the model gives no tags "
                       "(musicnn models do), or embed ran before tags were kept; rerun embed")  # fmt: skip
    tags = load_tags(layout)
    if tags.values.shape[0] != len(all_ids):
        raise ArtifactError(
            f"{layout.path('tags_f32')}: {tags.values.shape[0]} rows, {len(all_ids)} embedded tracks"
        )
    i = pick_block(tags.meta)
    b, values = tags.block(i)
    pos = {t["track_id"]: t["cluster"] for t in clusters["tracks"]}
    assignment = np.array([pos[t] for t in all_ids], dtype=np.int64)
    per = EA.cluster_tags(values, assignment, clusters["k"], b["tags"], TOP_TAGS)
    base = values.astype(np.float64).mean(axis=0)
    for c, top in zip(clusters["clusters"], per, strict=True):
        c["top_tags"] = [{"tag": t["tag"], "score": t["score"]} for t in top]
    block = {
        "model": b["model"],
        "vocabulary": b["vocabulary"],
        "n_tags": len(b["tags"]),
        "blocks_available": [f"{x['model']} ({x['vocabulary']})" for x in tags.meta["blocks"]],
        "method": (
            f"score = the mean over the cluster's tracks of the track-level tag probability (mean of the model's "
            f"per-frame sigmoid outputs); a cluster's top tags are the (at most) {TOP_TAGS} with the largest score "
            f"minus the catalogue mean of that tag, only tags at least {EA.MIN_LIFT:g} above it"
        ),
        "catalogue_top": [
            {"tag": b["tags"][j], "score": float(base[j])}
            for j in np.argsort(-base, kind="stable")[:TOP_TAGS]
        ],
        "clusters": [
            {"cluster": c["cluster"], "name": c["name"], "n_tracks": c["n_tracks"], "top_tags": top}
            for c, top in zip(clusters["clusters"], per, strict=True)
        ],
    }
    figs = {"tags.png": _fig_tags(block, values, assignment, b["tags"])}
    import pandas as pd

    df = pd.DataFrame(
        [{"cluster": c["cluster"], "name": c["name"], "tracks": c["n_tracks"],
          "top tags (score, catalogue mean)": ", ".join(
              f"{t['tag']} {t['score']:.2f} ({t['catalogue_mean']:.2f})" for t in c["top_tags"])}
         for c in block["clusters"]]
    )  # fmt: skip
    others = [x for j, x in enumerate(block["blocks_available"]) if j != i]
    body = [
        f"<p>Tags of {html.escape(b['model'])} ({html.escape(b['vocabulary'])}, {len(b['tags'])} tags"
        + (f"; also in the file: {html.escape(', '.join(others))}" if others else "")
        + f"). {html.escape(block['method'])}. Catalogue's most probable tags: "
        + html.escape(", ".join(f"{t['tag']} {t['score']:.2f}" for t in block["catalogue_top"]))
        + ".</p>",
        table(df),
    ]
    alts = {"tags.png": "tag scores of each cluster against the catalogue"}
    return Section("tags", block, figs, _page(title, body, figs, alts))


def _fig_tags(block: dict[str, Any], values: np.ndarray, assignment: np.ndarray, names: list[str]) -> bytes:
    shown: list[str] = []
    for c in block["clusters"]:
        for t in c["top_tags"]:
            if t["tag"] not in shown:
                shown.append(t["tag"])
    shown = shown[:24] or [t["tag"] for t in block["catalogue_top"]]
    cols = [names.index(t) for t in shown]
    k = len(block["clusters"])
    x = values[:, cols].astype(np.float64)
    base = x.mean(axis=0)
    mean = np.stack([x[assignment == j].mean(axis=0) if (assignment == j).any() else base for j in range(k)])
    diff = mean - base
    lim = float(np.abs(diff).max()) or 1.0
    fig, ax = figure(1.8 + 0.42 * len(shown), 1.2 + 0.36 * k)
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(np.arange(len(shown)), shown, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(np.arange(k), [f"{c['cluster']}: {c['name'][:28]} ({c['n_tracks']})" for c in block["clusters"]],
                  fontsize=8)  # fmt: skip
    if len(shown) * k <= 600:
        for i in range(k):
            for j in range(len(shown)):
                ax.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(diff[i, j]) > 0.6 * lim else "black")  # fmt: skip
    ax.set_title(f"Tags per cluster ({block['model']}): cluster mean (text) and its difference from the "
                 "catalogue mean (colour)", fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.03, label="cluster mean - catalogue mean")
    return png(fig)
