"""The co-design front per hardware: perplexity against simulated end-to-end speedup, one panel per preset
and phase, drawn from the tables of bench/RESULTS-codesign.md (so the figure shows exactly the committed
rows; nothing is re-measured here).

Each table row is | preset | method | param sparsity | simulated e2e speedup | ppl | ... |; a table's phase is
the word "decode" or "prefill" in the heading right above it (a row under a heading without one is an
error). Sections whose heading starts with "Earlier"
are left out (superseded rows).

    python bench/codesign_figure.py   # writes bench/codesign-front.png
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib.ticker  # noqa: E402

from besa_hw.report.figures import plt, save  # noqa: E402

SERIES = (  # (method prefix, label, style); the first that a row's method starts with names its series
    ("BESA + OBS target", "BESA + OBS, hardware target", dict(color="tab:red", marker="s", ls="-")),
    ("BESA target", "BESA, hardware target", dict(color="tab:orange", marker="o", ls="-")),
    ("search target", "search allocator", dict(color="tab:green", marker="^", ls="-")),
    ("BESA ", "plain BESA (40-70%)", dict(color="tab:blue", marker=".", ls="--")),
    ("sparsegpt 2:4", "SparseGPT 2:4, uniform", dict(color="black", marker="x", ls="none")),
)
CLIP = 400.0  # perplexities above this are drawn at the top edge, labelled


def rows(text: str) -> list[dict]:
    """The rows of every results table outside the "Earlier" sections, with their phase."""
    out, phase, skip = [], None, False
    for line in text.splitlines():
        if line.startswith("#"):
            skip = line.lstrip("# ").startswith("Earlier")
            found = re.findall(r"\b(decode|prefill)\b", line)
            phase = found[-1] if found else None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if skip or len(cells) < 5 or not cells[3].endswith("x") or cells[3].startswith("simulated"):
            continue
        try:
            up, ppl = float(cells[3].rstrip("x")), float(cells[4].strip("*"))
        except ValueError:
            continue
        if phase is None:
            raise ValueError(f"a results row under a heading that names no phase (decode or prefill): {line}")
        out.append({"preset": cells[0], "phase": phase, "method": cells[1], "speedup": up, "ppl": ppl})
    return out


def series_of(method: str) -> str | None:
    return next((label for prefix, label, _ in SERIES if method.startswith(prefix)), None)


def draw(data: list[dict], path: Path) -> Path:
    panels = list(dict.fromkeys((r["preset"], r["phase"]) for r in data))
    cols = 4
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (preset, phase) in zip(axes.flat, panels):
        mine = [r for r in data if (r["preset"], r["phase"]) == (preset, phase)]
        for _, label, style in SERIES:
            pts = sorted((r["speedup"], r["ppl"]) for r in mine if series_of(r["method"]) == label)
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [min(p[1], CLIP) for p in pts]
            ax.plot(xs, ys, label=label, **style)
            for x, y in pts:
                if y > CLIP:
                    ax.annotate(f"{y:,.0f}", (x, CLIP), textcoords="offset points", xytext=(0, -12), ha="center",
                                fontsize=7, color=style["color"])
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(f"{preset}, {phase}", fontsize=10)
        ax.set_xlabel("simulated end-to-end speedup (x)")
        ax.set_ylabel("perplexity (16 windows)")
        ax.grid(True, which="both", alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save(fig, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(ROOT / "bench" / "RESULTS-codesign.md"))
    p.add_argument("--out", default=str(ROOT / "bench" / "codesign-front.png"))
    args = p.parse_args()
    try:
        data = rows(Path(args.results).read_text())
    except (OSError, ValueError) as e:
        print(f"codesign_figure: {e}", file=sys.stderr)
        return 2
    if not data:
        print(f"codesign_figure: no result rows in {args.results}", file=sys.stderr)
        return 2
    print(f"wrote {draw(data, Path(args.out))} ({len(data)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
