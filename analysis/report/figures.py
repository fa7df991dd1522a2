"""The report's figures (matplotlib, Agg): assignment heatmap, running estimates with their
confidence sequences, pre-period fit and balance."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.report.stats import PreFit, _matrix  # noqa: E402
from core.ports import EFFECT_UNITS  # noqa: E402

TREATMENT_RED = "#d62728"

PENDING_GREY = "#d9d9d9"


def _natural(product: object) -> tuple[tuple[int, int | str], ...]:
    """A product id's sort key with its digit runs read as numbers: P2 before P10."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", str(product))
        if part
    )


def _product_order(df: pd.DataFrame) -> list[str]:
    """Products grouped by class (when known), then in id order (digits as numbers). A
    design whose products stay treated once they start (staggered, time-bound) orders them
    by their first treated period instead, so its rows draw the staircase of its starts."""
    W = _matrix(df, "treated").astype(int).to_numpy()
    first = W.argmax(axis=1) + (W.sum(axis=1) == 0) * W.shape[1]
    staggered = bool((np.diff(W, axis=1) >= 0).all()) if W.shape[1] > 1 else False
    index = _matrix(df, "treated").index
    key = pd.DataFrame({"product": index, "first": first if staggered else 0})
    key["name"] = key["product"].map(_natural)
    cols = ["first", "name"]
    if "class" in df.columns:
        key["class"] = df.groupby("product")["class"].first().reindex(index).to_numpy()
        cols = ["class", *cols]
    return key.sort_values(cols, kind="stable")["product"].tolist()


# --------------------------------------------------------------------------- figures
#: the colours of a k-arm experiment's arms other than control, in the page's order
ARM_COLOURS = ("#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def assignment_heatmap(
    df: pd.DataFrame, *, max_products: int = 120, arms: Sequence[str] = ()
) -> Figure:
    """Products x periods: treatment red, control white, out-of-window grey, blackouts hatched.

    With more than ``max_products`` products an evenly spaced subset is drawn (said in the
    title) so that rows stay readable. ``arms``: a k-arm experiment's arms other than the
    control (the panel's ``arm`` column names each cell's), each in its own colour.
    """
    order = _product_order(df)
    shown = order
    if len(order) > max_products:
        idx = np.linspace(0, len(order) - 1, max_products).round().astype(int)
        shown = [order[i] for i in idx]
    W = _matrix(df, "treated").reindex(shown).to_numpy(dtype=int)
    P = _matrix(df, "probability", np.nan).reindex(shown).to_numpy(dtype=float)
    B = _matrix(df, "blackout", False).reindex(shown).to_numpy(dtype=bool)
    periods = _matrix(df, "treated").columns.to_numpy()
    state = np.where(W == 1, 2, np.where(P == 0, 1, 0))  # 0 control, 1 outside window, 2 treated
    colours = ["white", PENDING_GREY, TREATMENT_RED]
    treated = [Patch(fc=TREATMENT_RED, ec="0.4", label="treatment")]
    if arms:  # each arm but control its own colour: 2 + its place in ``arms``
        cells = df.assign(arm=df["arm"].astype(object))  # a category column has no fill
        named = _matrix(cells, "arm", "").reindex(shown).astype(str).to_numpy()
        code = np.select([named == a for a in arms], np.arange(2, 2 + len(arms)), 0)
        state = np.where(W == 1, code, state)
        colours = ["white", PENDING_GREY, *ARM_COLOURS[: len(arms)]]
        treated = [Patch(fc=c, ec="0.4", label=a) for a, c in zip(arms, ARM_COLOURS, strict=False)]
    n, T = state.shape
    width = min(14, 3 + 0.32 * T)
    fig, ax = plt.subplots(figsize=(width, min(16, 1.8 + 0.12 * n)), layout="constrained")
    cmap = ListedColormap(colours)
    ax.imshow(
        state, cmap=cmap, vmin=0, vmax=len(colours) - 1, aspect="auto", interpolation="nearest"
    )
    for i in range(n):  # one hatched rectangle per run of blackout cells
        t = 0
        while t < T:
            if B[i, t]:
                s = t
                while t < T and B[i, t]:
                    t += 1
                ax.add_patch(
                    Rectangle(
                        (s - 0.5, i - 0.5), t - s, 1, fill=False, hatch="///", lw=0, ec="0.25"
                    )
                )
            else:
                t += 1
    ax.set_xticks(np.arange(0, T, max(1, T // 14)))
    ax.set_xticklabels([str(p) for p in periods[:: max(1, T // 14)]], fontsize=8)
    if n <= 60:
        ax.set_yticks(np.arange(n), shown, fontsize=6)
    else:
        ax.set_yticks([])
    ax.set_xticks(np.arange(-0.5, T, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="0.85", lw=0.3)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("period")
    ax.set_ylabel("product")
    title = "Assignment: products x periods"
    if len(shown) < len(order):
        title += f" ({len(shown)} of {len(order)} products shown)"
    ax.set_title(title)
    # below the axes in space the layout reserves for it (an axes legend anchored under the
    # axes overlapped the period label and, four columns wide, ran off a narrow figure at
    # both ends); two columns when four would not fit
    handles = [
        *treated,
        Patch(fc="white", ec="0.4", label="control"),
        Patch(fc=PENDING_GREY, ec="0.4", label="outside window (P = 0)"),
        Patch(fc="white", ec="0.25", hatch="///", label="blackout (data discarded)"),
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=2 if width < 7.5 else 4 if not arms else len(handles) if width >= 11 else 3,
        fontsize=8,
        frameon=False,
    )
    return fig


def running_estimates_figure(
    estimates: pd.DataFrame,
    truths: Mapping[str, float] | None = None,
    *,
    arms: Sequence[str] = (),
    arm_truths: Mapping[tuple[str, str], float] | None = None,
) -> Figure:
    """Every metric's running estimates: one row of panels per metric (in ``metrics``'
    order: units, revenue, profit, price), one panel per estimator that measures it, each with
    its 95% interval at every look and its anytime-valid confidence sequence.

    ``estimates`` has one row per published estimate: metric (none: units), estimator,
    n_periods, effect, ci_low, ci_high and optionally cs_low, cs_high. The x axis is the
    number of periods analysed. ``truths``: a metric's true effect, drawn where known.

    ``arms`` (a k-arm experiment's, other than control, with an ``arm`` column): one panel
    per arm against the control instead, by the estimator the rows give (the caller keeps
    each metric's primary); ``arm_truths`` per (metric, arm).
    """
    metric = estimates["metric"] if "metric" in estimates.columns else None
    e_all = estimates.assign(metric="units" if metric is None else metric.fillna("units"))
    metrics = [m for m in EFFECT_UNITS if m in set(e_all["metric"])]
    by = "arm" if arms else "estimator"
    names = {m: list(dict.fromkeys(e_all.loc[e_all["metric"] == m, by])) for m in metrics}
    if arms:
        names = {m: [a for a in arms if a in v] for m, v in names.items()}
    cols = max(len(v) for v in names.values())
    fig, axes = plt.subplots(
        len(metrics), cols, figsize=(3.9 * cols, 2.5 * len(metrics)), squeeze=False,
        sharex=True, layout="constrained",
    )  # fmt: skip
    for row, m in enumerate(metrics):
        for col in range(cols):
            ax = axes[row, col]
            if col >= len(names[m]):
                ax.set_axis_off()
                continue
            name = names[m][col]
            e = e_all[(e_all["metric"] == m) & (e_all[by] == name)]
            e = e.sort_values("n_periods", kind="stable").drop_duplicates("n_periods", keep="last")
            x = e["n_periods"].to_numpy(float)
            ax.fill_between(
                x, e["ci_low"].astype(float), e["ci_high"].astype(float), alpha=0.25,
                color="tab:blue", lw=0, label="95% interval (one look)",
            )  # fmt: skip
            if "cs_low" in e and e["cs_low"].notna().any():
                ax.plot(x, e["cs_low"], "--", color="tab:purple", lw=1,
                        label="confidence sequence (every look)")  # fmt: skip
                ax.plot(x, e["cs_high"], "--", color="tab:purple", lw=1)
            ax.plot(x, e["effect"], "o-", ms=3, color="tab:blue", label="estimate")
            ax.axhline(0, color="k", lw=0.7)
            truth = (arm_truths or {}).get((m, name)) if arms else (truths or {}).get(m)
            if truth is not None and math.isfinite(truth):
                ax.axhline(truth, color="tab:green", lw=1, ls=":", label="true effect (simulation)")
            title = f"{m}: {name}"
            if arms:
                title += f" vs control ({', '.join(dict.fromkeys(e['estimator']))})"
            ax.set_title(title, fontsize=9, loc="left")
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if col == 0:
                ax.set_ylabel(EFFECT_UNITS[m], fontsize=8)
            if row == len(metrics) - 1:
                ax.set_xlabel("periods analysed", fontsize=8)
    handles, labels = {}, []
    for ax in axes.ravel():  # one legend for the figure: every kind of line once
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    fig.legend(
        [handles[label] for label in labels], labels, loc="outside upper center",
        ncol=min(4, len(labels)), fontsize=8, frameon=False,
    )  # fmt: skip
    return fig


def pre_period_figure(fits: Sequence[PreFit]) -> Figure:
    fig, axes = plt.subplots(1, len(fits), figsize=(4.2 * len(fits), 3.2), squeeze=False)
    for ax, f in zip(axes[0], fits, strict=True):
        x = np.arange(len(f.periods))
        ax.plot(x, f.treated, color=TREATMENT_RED, label="treated mean")
        ax.plot(x, f.synthetic, color="0.3", ls="--", label="synthetic control")
        ax.axvline(f.first_treated - 0.5, color="k", lw=0.8)
        ax.set_title(f"{f.estimator}: pre-period RMSE {f.pre_rmse:.2f}", fontsize=9)
        ax.set_xlabel("period")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("units per product")
    fig.tight_layout()
    return fig


def balance_figure(df: pd.DataFrame, balance: pd.DataFrame) -> Figure:
    """Treated share per period with the design probability, and covariate SMDs."""
    if len(balance):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4))
    else:  # no covariate to draw: the sample ratio alone
        fig, a1 = plt.subplots(figsize=(6.5, 3.4))
    d = df[~df["blackout"]]
    per = d.groupby("period").agg(
        share=("treated", "mean"), p=("probability", "mean"), n=("treated", "size")
    )
    x = np.arange(len(per))
    a1.bar(x, per["share"], color=TREATMENT_RED, alpha=0.7, label="realised treated share")
    a1.plot(x, per["p"], "k_", ms=12, mew=2, label="design probability")
    band = 1.96 * np.sqrt(per["p"] * (1 - per["p"]) / per["n"])
    a1.errorbar(x, per["p"], yerr=band, fmt="none", ecolor="0.4", lw=0.8, capsize=2)
    a1.set_ylim(0, 1)
    a1.set_xlabel("period (blackout cells excluded)")
    a1.set_title(
        "Sample ratio per period (bars: 95% binomial band of independent cells)", fontsize=9
    )
    a1.legend(fontsize=7)
    if len(balance):
        y = np.arange(len(balance))
        a2.barh(y, balance["smd"], height=0.5, color="tab:blue")
        a2.set_yticks(y, balance["covariate"], fontsize=8)
        a2.set_ylim(-0.75, len(balance) - 0.25)
        a2.xaxis.set_major_locator(MaxNLocator(5))
        a2.axvline(0, color="k", lw=0.7)
        for v in (-0.1, 0.1):
            a2.axvline(v, color="0.5", ls="--", lw=0.7)
        a2.set_xlabel("standardised mean difference (treated - control)")
        a2.set_title("Covariate balance (|SMD| < 0.1 dashed)", fontsize=9)
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # the saved area grows to every artist drawn (a legend or label never cut at the edge)
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buf.getvalue()
