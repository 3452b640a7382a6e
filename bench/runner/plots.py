"""PNG plots from a summary JSON written by side_by_side.py. Runs under bench/runner/.venv.

    .venv/bin/python plots.py SUMMARY.json OUT_DIR
Writes OUT_DIR/latency.png and OUT_DIR/throughput.png (when there is data for them).
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"portico": "#2a6fdb", "mosquitto": "#3c9d4e", "rumqttd": "#d9822b"}


def bars(ax, groups, brokers, get, labels):
    """Grouped bars: one group per entry of `groups`, one bar per broker, min–max error bars."""
    width = 0.8 / max(1, len(brokers))
    for i, (name, label) in enumerate(brokers):
        xs, ys, lo, hi = [], [], [], []
        for g, group in enumerate(groups):
            s = get(group, name)
            if s is None:
                continue
            xs.append(g + (i - (len(brokers) - 1) / 2) * width)
            ys.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
        if xs:
            ax.bar(xs, ys, width, label=label, color=COLORS.get(name), yerr=[lo, hi], capsize=3)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(labels)


def main():
    summary = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    brokers = summary["brokers"]  # [[name, label], ...]
    subtitle = summary["subtitle"]

    lat = summary.get("latency")
    if lat:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        pcts = ["p50", "p99", "p999"]
        bars(ax, pcts, brokers, lambda p, b: lat[p].get(b), ["p50", "p99", "p99.9"])
        ax.set_yscale("log")
        lows = [s["min"] for p in pcts for s in lat[p].values() if s]
        if lows:
            ax.set_ylim(bottom=min(lows) / 3)
        ax.set_ylabel("latency (µs, log scale)")
        ax.set_title(f"{lat['title']}\n{subtitle}", fontsize=9)
        ax.legend()
        ax.grid(axis="y", alpha=0.3, which="both")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)

    tput = summary.get("throughput") or []
    if tput:
        fig, axes = plt.subplots(1, len(tput), figsize=(3.2 * len(tput), 4.2), squeeze=False)
        for ax, item in zip(axes[0], tput):
            bars(ax, [item], brokers, lambda it, b: it["brokers"].get(b), [""])
            ax.set_title(item["title"], fontsize=8)
            ax.set_ylabel(item["unit"])
            ax.grid(axis="y", alpha=0.3)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", fontsize=8)
        fig.suptitle(f"Throughput (median, min–max bars)\n{subtitle}", fontsize=9)
        fig.tight_layout(rect=(0, 0, 0.92, 1))
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
