"""Render ``bench/results/quality_<corpus>.json`` (written by :mod:`bench.quality`) as Markdown tables:
``docs/quality.md`` and the README block between ``<!-- quality:start -->`` and ``<!-- quality:end -->``.

Cells are the value and its bootstrap 95% CI; "rnd" is the exact expectation under a random ranking. Heads are
shown on their own test split next to the frozen backbone on the same tracks (a head's figures over all tracks
would include the tracks it trained on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, ROOT

START, END = "<!-- quality:start -->", "<!-- quality:end -->"
TASK_NAMES = {
    "composer/all": "same composer / artist",
    "album_id/all": "same soundtrack",
    "composer/multi_label_albums": "same artist, within soundtracks of several artists",
}


def _ci(block: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    if not block or not block.get("metrics"):
        return "n/a"
    v = block["metrics"][key]
    ci = (block.get("confidence_intervals") or {}).get(key)
    return f"{v:.{digits}f} [{ci['low']:.{digits}f}, {ci['high']:.{digits}f}]" if ci else f"{v:.{digits}f}"


def _val(block: dict[str, Any] | None, key: str) -> str:
    return f"{block['metrics'][key]:.3f}" if block and block.get("metrics") else "n/a"


def _clu(task: dict[str, Any] | None, key: str) -> str:
    c = (task or {}).get("clustering")
    return f"{c[key]:.3f}" if c else "n/a"


def _task_cells(task: dict[str, Any] | None) -> list[str]:
    o = (task or {}).get("overall")
    rnd = f" (rnd {o['random_baseline']['precision_at_k']:.3f})" if o and o.get("random_baseline") else ""
    return [
        _ci(o, "precision_at_k") + rnd,
        _val(o, "hit_rate_at_k"),
        _val(o, "mrr"),
        _clu(task, "silhouette_cosine"),
        _clu(task, "kmeans_nmi"),
    ]


def _excerpt_cells(ex: dict[str, Any] | None) -> list[str]:
    if not ex:
        return ["n/a", "n/a"]
    return [_ci(ex, "recall_at_1"), _val(ex, "recall_at_10")]


def _header(tasks: list[str]) -> list[str]:
    cols = ["entry"]
    for t in tasks:
        name = TASK_NAMES.get(t, t)
        cols += [f"P@5 ({name})", "HitRate@5", "MRR", "silhouette", "NMI"]
    cols += ["excerpt R@1", "R@10", "dim"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def frozen_table(res: dict[str, Any]) -> list[str]:
    tasks = sorted(
        {t for r in res.get("frozen", {}).values() for t in (r.get("tasks") or {})},
        key=list(TASK_NAMES).index,
    )
    lines = _header(tasks)

    def row(name: str, r: dict[str, Any], excerpt: dict[str, Any] | None) -> str:
        cells = [name, *(c for t in tasks for c in _task_cells((r.get("tasks") or {}).get(t)))]
        return "| " + " | ".join([*cells, *_excerpt_cells(excerpt), str(r.get("dim") or "")]) + " |"

    d = res.get("default")
    if d:
        name = f"**default pipeline** (`{d['model']}`, postprocess `{d['postprocess']}`)"
        lines.append(row(name, d, d.get("excerpt")))
    for entry, r in res.get("frozen", {}).items():
        if r.get("status") != "ok":
            lines.append(f"| `{entry}` | failed: {r.get('error') or r.get('status')} |")
            continue
        lines.append(row(f"`{entry}`", r, (res.get("excerpt") or {}).get(entry)))
    return lines


def levers_table(res: dict[str, Any]) -> list[str]:
    levers = res.get("levers") or {}
    if not levers:
        return []
    tasks = sorted({t for r in levers.values() for t in r}, key=list(TASK_NAMES).index)
    cols = (
        [f"re-ranking of the default ({(res.get('default') or {}).get('model', 'musicnn-msd')})"]
        + [f"P@5 ({TASK_NAMES.get(t, t)})" for t in tasks]
        + ["MRR" for _ in tasks]
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m, r in levers.items():
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{m}`",
                    *(_ci(r[t]["overall"], "precision_at_k") for t in tasks),
                    *(_val(r[t]["overall"], "mrr") for t in tasks),
                ]
            )
            + " |"
        )
    return lines


def heads_table(res: dict[str, Any]) -> list[str]:
    heads = res.get("heads") or {}
    if not heads:
        return []
    tasks = sorted({t for r in heads.values() for t in r.get("tasks", {})}, key=list(TASK_NAMES).index)
    cols = ["head (test split)", "vectors"]
    for t in tasks:
        cols += [f"P@5 ({TASK_NAMES.get(t, t)})", "HitRate@5", "MRR", "silhouette", "NMI"]
    cols += ["excerpt R@1", "R@10", "train s", "head.pt MB", "params", "split"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in heads.items():
        meta = r.get("head_meta") or {}
        split = (meta.get("split") or {}).get("by", "?")
        for which in ("head", "frozen"):
            cells = [f"`{name}`", which]
            for t in tasks:
                hc = (r["tasks"].get(t) or {}).get("head_comparison") or {}
                cells += _task_cells(hc.get(which))
            ex = r.get("excerpt") or {}
            cells += _excerpt_cells(ex if which == "head" else ex.get("frozen"))
            cells += (
                [
                    f"{meta.get('train_sec', 0):.0f}",
                    f"{meta['size_bytes'] / 2**20:.1f}" if meta.get("size_bytes") else "n/a",
                    f"{meta['n_params']:,}" if meta.get("n_params") else "n/a",
                    split,
                ]
                if which == "head"
                else ["", "", "", ""]
            )
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def paired_table(res: dict[str, Any]) -> list[str]:
    """Every vector entry's P@5 minus the default's, paired over the same queries, with its bootstrap CI; an
    entry is told apart from the default only when its interval excludes zero."""
    paired = res.get("paired") or {}
    if not paired:
        return []
    tasks = sorted(paired, key=list(TASK_NAMES).index)
    cols = ["entry"] + [f"P@5 minus default ({TASK_NAMES.get(t, t)})" for t in tasks]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for entry in paired[tasks[0]]:
        cells = [f"`{entry}`"]
        for t in tasks:
            p = paired[t].get(entry)
            mark = "" if not p or p["low"] <= 0 <= p["high"] else " *"
            cells.append(f"{p['mean']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]{mark}" if p else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _diff(r: dict[str, Any], task: str, key: str) -> float | None:
    hc = (r["tasks"].get(task) or {}).get("head_comparison") or {}
    h, f = (hc.get("head") or {}).get("overall"), (hc.get("frozen") or {}).get("overall")
    return (
        h["metrics"][key] - f["metrics"][key] if h and f and h.get("metrics") and f.get("metrics") else None
    )


def heads_summary(res: dict[str, Any]) -> list[str]:
    """Per head kind: head minus frozen on its test split, each seed and the mean (P@5 per task, excerpt R@1)."""
    heads = res.get("heads") or {}
    kinds: dict[str, list[dict[str, Any]]] = {}
    for name, r in heads.items():
        kinds.setdefault(name.rsplit("-s", 1)[0], []).append(r)
    tasks = sorted({t for r in heads.values() for t in r.get("tasks", {})}, key=list(TASK_NAMES).index)
    cols = (
        ["head kind", "seeds"]
        + [f"P@5 head - frozen ({TASK_NAMES.get(t, t)})" for t in tasks]
        + ["excerpt R@1 head - frozen"]
    )
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for kind, rs in kinds.items():
        cells = [f"`{kind}`", str(len(rs))]
        for t in tasks:
            d = [x for x in (_diff(r, t, "precision_at_k") for r in rs) if x is not None]
            cells.append(
                " / ".join(f"{x:+.3f}" for x in d) + (f" (mean {sum(d) / len(d):+.3f})" if len(d) > 1 else "")
            )
        ex = [
            r["excerpt"]["metrics"]["recall_at_1"] - r["excerpt"]["frozen"]["metrics"]["recall_at_1"]
            for r in rs
            if r.get("excerpt") and r["excerpt"].get("frozen")
        ]
        cells.append(
            " / ".join(f"{x:+.3f}" for x in ex) + (f" (mean {sum(ex) / len(ex):+.3f})" if len(ex) > 1 else "")
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def corpus_section(res: dict[str, Any]) -> list[str]:
    out = [f"### {res['corpus']}: {res.get('about', '')}", "", *frozen_table(res), ""]
    if res.get("paired"):
        out += [
            "Each entry minus the default pipeline, paired over the same queries (paired bootstrap 95% CI; "
            "`*` = the interval excludes 0):",
            "",
            *paired_table(res),
            "",
        ]
    if res.get("levers"):
        out += [
            "Index-time levers (hubness reduction, query expansion) over the default:",
            "",
            *levers_table(res),
            "",
        ]
    if res.get("heads"):
        out += [
            "Trained heads, each on its own test split beside the frozen backbone on the same tracks:",
            "",
            *heads_table(res),
            "",
            "Head minus frozen per head kind (each seed its own split; the mean over seeds):",
            "",
            *heads_summary(res),
            "",
        ]
    return out


def render() -> None:
    """Write docs/quality.md and the README block from every quality result present."""
    sections: list[str] = []
    for corpus in ("demo", "realmusic"):
        path = RESULTS_DIR / f"quality_{corpus}.json"
        if path.is_file():
            sections += corpus_section(json.loads(path.read_text(encoding="utf-8")))
    body = "\n".join(sections).rstrip() + "\n"
    doc = ROOT / "docs" / "quality.md"
    doc.write_text(
        "# Retrieval quality on the demo corpus and on recorded music\n\n"
        "Generated by `python -m bench.quality --report-only` from `bench/results/quality_*.json` "
        "(`make quality` measures them). Cells: value [bootstrap 95% CI]; rnd = the exact random-ranking "
        "expectation. P@5 asks for the label of the row's task among the 5 nearest other tracks; excerpt R@1: "
        "a seeded 10 s excerpt, low-passed at 4 kHz with noise at 20 dB SNR and a gain change (3 per track), finds its own track first among all tracks. "
        "Speed is not measured here (the runs share the machine): see the benchmarks.\n\n" + body,
        encoding="utf-8",
    )
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START in text and END in text:
        i, j = text.index(START) + len(START), text.index(END)
        readme.write_text(text[:i] + "\n" + body + text[j:], encoding="utf-8")


def main() -> int:
    render()
    print(Path(ROOT / "docs" / "quality.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
