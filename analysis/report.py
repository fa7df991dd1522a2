"""Analyst reports: pictures of a running (or finished) price experiment.

Pure: everything is computed from a long panel DataFrame (one row per product and period, as
the analysis worker's PanelSource or the simulator produce it) and a table of running estimates
(the messages of the estimates topic); the caller decides where they come from. The page is
one HTML file with PNG figures next to it (relative paths), so the directory can be zipped,
mailed or served as is.

Contents:

- assignment heatmap, products x periods: treatment red, control white, outside the window
  (probability 0) grey, blackout cells hatched, like the figures of the origin article
  (Cooprider & Nassiri 2023, as shown in the Amazon Science article);
- running estimates per estimator with the 95% interval and the anytime-valid confidence
  sequence (Howard et al. 2021; analysis/confseq.py) over the periods seen;
- pre-period fit of the synthetic-control-type estimators (sc, difp, sdid) when the design has
  a pre-period (block designs): treated mean against its synthetic control;
- balance and sample-ratio check: realised treated share against the design probability with a
  binomial test at the level of the independent draws, and standardised mean differences of
  the covariates (and of the pre-period outcome when there is one).
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from scipy import stats  # noqa: E402

from analysis.errors import AnalysisError  # noqa: E402
from analysis.estimators import registry  # noqa: E402
from analysis.panel import Panel  # noqa: E402
from analysis.results import EstimateResult  # noqa: E402
from core.ports import EstimatorPlan, ExperimentInfo  # noqa: E402

SYNTH_ESTIMATORS: tuple[str, ...] = ("sc", "difp", "sdid")
COVARIATE_CANDIDATES: tuple[str, ...] = ("base_price", "width", "battery", "rating", "weight")
TREATMENT_RED = "#d62728"
PENDING_GREY = "#d9d9d9"


# --------------------------------------------------------------------------- inputs
def normalise_panel(df: pd.DataFrame, outcome: str = "units") -> pd.DataFrame:
    """Columns product, period, ``outcome``, treated, probability, blackout (+ the rest).

    Accepts the worker's cell table (``product``, ``period``) and the simulator's panel
    (``unit``, ``period``); a missing probability is taken as unknown (NaN), a missing
    blackout as False.
    """
    d = df.copy()
    if "period" not in d.columns and "day" in d.columns:
        d = d.rename(columns={"day": "period"})
    if "product" not in d.columns and "unit" in d.columns:
        d = d.rename(columns={"unit": "product"})
    missing = [c for c in ("product", "period", outcome, "treated") if c not in d.columns]
    if missing:
        raise AnalysisError(f"the panel needs column(s) {missing}; it has {list(d.columns)}")
    if "probability" not in d.columns:
        d["probability"] = np.nan
    if "blackout" not in d.columns:
        d["blackout"] = False
    d["treated"] = d["treated"].astype(int)
    d["blackout"] = d["blackout"].astype(bool)
    return d.sort_values(["product", "period"], kind="stable").reset_index(drop=True)


def _matrix(df: pd.DataFrame, col: str, fill: Any = 0) -> pd.DataFrame:
    return df.pivot(index="product", columns="period", values=col).fillna(fill)


def _product_order(df: pd.DataFrame) -> list[str]:
    """Products grouped by class (when known), then by their first treated period and arm."""
    W = _matrix(df, "treated").astype(int)
    first = W.to_numpy().argmax(axis=1) + (W.to_numpy().sum(axis=1) == 0) * W.shape[1]
    key = pd.DataFrame({"product": W.index, "first": first, "share": W.to_numpy().mean(axis=1)})
    if "class" in df.columns:
        key["class"] = df.groupby("product")["class"].first().reindex(W.index).to_numpy()
        key = key.sort_values(["class", "first", "product"], kind="stable")
    else:
        key = key.sort_values(["first", "product"], kind="stable")
    return key["product"].tolist()


# --------------------------------------------------------------------------- figures
def assignment_heatmap(df: pd.DataFrame, *, max_products: int = 120) -> Figure:
    """Products x periods: treatment red, control white, out-of-window grey, blackouts hatched.

    With more than ``max_products`` products an evenly spaced subset is drawn (said in the
    title) so that rows stay readable.
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
    n, T = state.shape
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.32 * T), min(16, 1.8 + 0.12 * n)))
    cmap = ListedColormap(["white", PENDING_GREY, TREATMENT_RED])
    ax.imshow(state, cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
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
    ax.legend(
        handles=[
            Patch(fc=TREATMENT_RED, ec="0.4", label="treatment"),
            Patch(fc="white", ec="0.4", label="control"),
            Patch(fc=PENDING_GREY, ec="0.4", label="outside window (P = 0)"),
            Patch(fc="white", ec="0.25", hatch="///", label="blackout (data discarded)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.06),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return fig


def running_estimates_figure(estimates: pd.DataFrame, truth: float | None = None) -> Figure:
    """Each estimator's running estimate with its 95% interval and confidence sequence.

    ``estimates`` has one row per published estimate: estimator, n_periods, effect, ci_low,
    ci_high and optionally cs_low, cs_high. The x axis is the number of periods analysed.
    """
    names = list(dict.fromkeys(estimates["estimator"]))
    fig, axes = plt.subplots(
        len(names), 1, figsize=(8, 2.6 * max(1, len(names))), sharex=True, squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        e = estimates[estimates["estimator"] == name].sort_values("n_periods")
        e = e.drop_duplicates("n_periods", keep="last")
        x = e["n_periods"].to_numpy(float)
        ax.fill_between(x, e["ci_low"], e["ci_high"], alpha=0.25, label="95% interval")
        if "cs_low" in e and e["cs_low"].notna().any():
            ax.plot(x, e["cs_low"], "--", color="tab:purple", lw=1, label="confidence sequence")
            ax.plot(x, e["cs_high"], "--", color="tab:purple", lw=1)
        ax.plot(x, e["effect"], "o-", ms=3, color="tab:blue", label="estimate")
        ax.axhline(0, color="k", lw=0.7)
        if truth is not None and math.isfinite(truth):
            ax.axhline(truth, color="tab:green", lw=1, ls=":", label="true effect (simulation)")
        ax.set_ylabel(name)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("periods analysed")
    fig.suptitle("Running estimates (effect on units per product-period)")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class PreFit:
    estimator: str
    periods: np.ndarray
    treated: np.ndarray
    synthetic: np.ndarray
    first_treated: int
    pre_rmse: float
    effect: float


def pre_period_fits(
    panel: Panel, estimators: Sequence[str] = SYNTH_ESTIMATORS, seed: int = 0
) -> list[PreFit]:
    """Treated mean path against the synthetic control of each sc-type estimator.

    Only for block designs with a pre-period (empty otherwise). The synthetic path is the
    control units weighted by the estimator's unit weights; for difp and sdid, which allow a
    level difference, it is shifted to match the treated pre-period mean.
    """
    if not panel.is_block or panel.blackout.any():
        return []
    p = panel.sorted_for_block()
    try:
        N0, T0 = p.block_structure()
    except AnalysisError:
        return []
    if T0 < 2:
        return []
    treated = p.Y[N0:].mean(axis=0)
    fits = []
    for name in estimators:
        try:
            res = registry.make(name, seed=seed, se="none").fit(p).result
        except (AnalysisError, ValueError):
            continue
        w = res.details.get("unit_weights") or {}
        omega = np.array([w.get(u, 0.0) for u in p.units[:N0]])
        synth = omega @ p.Y[:N0]
        if name != "sc":
            synth = synth + (treated[:T0].mean() - synth[:T0].mean())
        rmse = float(np.sqrt(np.mean((treated[:T0] - synth[:T0]) ** 2)))
        fits.append(PreFit(name, p.times, treated, synth, T0, rmse, res.effect))
    return fits


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


# --------------------------------------------------------------------------- balance
@dataclass(frozen=True)
class SampleRatio:
    """Realised treated share of the independent draws against the design probability."""

    level: str  # "product", "class" or "cell"
    n: int
    treated: int
    expected_share: float
    pvalue: float

    @property
    def share(self) -> float:
        return self.treated / self.n if self.n else math.nan


def sample_ratio_check(df: pd.DataFrame) -> SampleRatio | None:
    """Binomial test of the treated count among the design's independent draws.

    When every product keeps one arm over its randomised periods (time-bound, crossover in its
    first phase, fixed clusters) the draws are products (their first randomised period); when
    a ``class`` column is present, class x period; otherwise product x period cells (random
    days). Cells with P(treatment) of 0 or 1, unknown or in blackout are left out. With unequal
    probabilities the count is compared with its Poisson-binomial mean and variance (normal
    approximation).
    """
    d = df[(df["probability"] > 0) & (df["probability"] < 1) & ~df["blackout"]]
    if d.empty:
        return None
    fixed = d.groupby("product")["treated"].nunique().max() == 1
    if "class" in d.columns and not fixed:
        draws = d.groupby(["class", "period"]).agg(
            treated=("treated", "max"), probability=("probability", "first")
        )
        level = "class"
    elif fixed:
        draws = d.sort_values("period").groupby("product").first()
        level = "product"
    else:
        draws, level = d, "cell"
    n = len(draws)
    k = int(draws["treated"].sum())
    p = draws["probability"].to_numpy(float)
    if np.allclose(p, p[0]):
        pval = float(stats.binomtest(k, n, float(p[0])).pvalue)
    else:
        mu, var = float(p.sum()), float((p * (1 - p)).sum())
        pval = float(2 * stats.norm.sf(abs(k - mu) / math.sqrt(var))) if var > 0 else math.nan
    return SampleRatio(level, n, k, float(p.mean()), pval)


def covariate_balance(df: pd.DataFrame, outcome: str = "units") -> pd.DataFrame:
    """Standardised mean differences (treated - control) / pooled SD, over randomised cells.

    Covariates are the product characteristics present in the panel and, when the design has
    a pre-period (cells with P(treatment) = 0 before a product's first randomised period), the
    product's pre-period mean outcome. Products enter with the share of their randomised cells
    in each arm, so a switchback's products count in both arms.
    """
    cand = [c for c in COVARIATE_CANDIDATES if c in df.columns]
    per_unit = (
        df.groupby("product")[cand].first() if cand else pd.DataFrame(index=df["product"].unique())
    )
    pre = df[(df["probability"] == 0) & ~df["blackout"]]
    rand = df[(df["probability"] > 0) & ~df["blackout"]]
    if not pre.empty and not rand.empty:
        first_rand = rand.groupby("product")["period"].min()
        pre = pre[pre["period"] < pre["product"].map(first_rand)]
        if not pre.empty:
            per_unit["pre-period outcome"] = pre.groupby("product")[outcome].mean()
    if rand.empty or per_unit.shape[1] == 0:
        return pd.DataFrame(columns=["covariate", "mean_treated", "mean_control", "smd"])
    share = rand.groupby("product")["treated"].mean().reindex(per_unit.index).fillna(0.0)
    rows = []
    for c in per_unit.columns:
        x = per_unit[c].astype(float)
        ok = x.notna()
        w1, w0, xv = share[ok].to_numpy(), 1 - share[ok].to_numpy(), x[ok].to_numpy()
        if w1.sum() == 0 or w0.sum() == 0:
            continue
        m1, m0 = float((w1 * xv).sum() / w1.sum()), float((w0 * xv).sum() / w0.sum())
        sd = float(xv.std(ddof=1)) if len(xv) > 1 else math.nan
        rows.append(
            {
                "covariate": c,
                "mean_treated": m1,
                "mean_control": m0,
                "smd": (m1 - m0) / sd if sd and sd > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)


def balance_figure(df: pd.DataFrame, balance: pd.DataFrame) -> Figure:
    """Treated share per period with the design probability, and covariate SMDs."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4))
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
        a2.barh(y, balance["smd"], color="tab:blue")
        a2.set_yticks(y, balance["covariate"], fontsize=8)
        a2.axvline(0, color="k", lw=0.7)
        for v in (-0.1, 0.1):
            a2.axvline(v, color="0.5", ls="--", lw=0.7)
        a2.set_xlabel("standardised mean difference (treated - control)")
    else:
        a2.text(0.5, 0.5, "no covariates in the panel", ha="center", va="center")
        a2.set_axis_off()
    a2.set_title("Covariate balance (|SMD| < 0.1 dashed)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- running estimates
@dataclass
class _ReplaySource:
    """A PanelSource that shows the worker the first ``k`` periods of a finished panel."""

    df: pd.DataFrame
    info: Any
    k: int = 0

    async def experiments(self) -> list[Any]:
        return [self.info]

    async def panel(self, exp_id: str) -> pd.DataFrame:
        return self.df[self.df["period"] < self.k]


@dataclass
class _ListSink:
    rows: list[dict[str, Any]] = field(default_factory=list)

    async def publish(
        self,
        experiment: str,
        result: EstimateResult,
        as_of: datetime,
        cs: tuple[float, float] | None,
    ) -> None:
        lo, hi = result.conf_int(0.05)
        self.rows.append(
            {
                "experiment": experiment,
                "estimator": result.method,
                "effect": result.effect,
                "se": result.se,
                "ci_low": lo,
                "ci_high": hi,
                "cs_low": None if cs is None else cs[0],
                "cs_high": None if cs is None else cs[1],
                "n_units": result.n_units,
                "n_periods": result.n_periods,
                "se_method": result.se_method,
                "as_of": as_of,
            }
        )


@dataclass
class _StepClock:
    t: datetime

    def now(self) -> datetime:
        return self.t

    async def sync(self) -> None:
        return None


def replay_estimates(
    df: pd.DataFrame,
    *,
    experiment: str,
    design: str,
    estimators: Sequence[EstimatorPlan | str],
    start: datetime | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Running estimates of a finished panel, computed the way the analysis worker does.

    The real :class:`analysis.worker.AnalysisWorker` runs once after each period, on the
    periods completed so far, with ``estimators`` (the design's own, which the caller gets from
    the design) and its confidence sequence tuned at the first look to the planned horizon.
    Returns the messages it would have published.
    """
    from analysis.worker import AnalysisWorker

    d = normalise_panel(df)
    periods = sorted(d["period"].unique())
    remap = {p: i for i, p in enumerate(periods)}
    d = d.assign(period=d["period"].map(remap))
    plans = tuple(EstimatorPlan(e) if isinstance(e, str) else e for e in estimators)
    info = ExperimentInfo(
        experiment, design, "running", {"n_periods": len(periods)}, estimators=plans,
        planned_periods=len(periods),
    )  # fmt: skip
    source = _ReplaySource(d, info)
    sink = _ListSink()
    t0 = start or datetime(2026, 1, 1, tzinfo=UTC)
    clock = _StepClock(t0)
    worker = AnalysisWorker(source=source, sink=sink, clock=clock, seed=seed)
    for k in range(2, len(periods) + 1):
        source.k = k
        clock.t = t0 + timedelta(days=k)
        asyncio.run(worker.run_once())
    return pd.DataFrame(sink.rows)


def final_estimates(df: pd.DataFrame, estimators: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """One fit of each estimator on the whole panel (when no running estimates exist)."""
    panel = to_panel(df)
    rows = []
    for name in estimators:
        try:
            res = registry.make(name, seed=seed).fit(panel).result
        except (AnalysisError, ValueError):
            continue
        rows.append(res.to_dict() | {"estimator": name})
    return pd.DataFrame(rows)


def to_panel(df: pd.DataFrame, outcome: str = "units") -> Panel:
    d = normalise_panel(df, outcome)
    has_p = d["probability"].notna().all()
    return Panel.from_long(
        d,
        unit="product",
        time="period",
        outcome=outcome,
        treated="treated",
        blackout="blackout",
        probability="probability" if has_p else None,
    )


# --------------------------------------------------------------------------- page
@dataclass(frozen=True)
class Report:
    """The report's content: figures (name -> PNG bytes) and the HTML page referencing them."""

    html: str
    figures: dict[str, bytes]

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in self.figures.items():
            (out_dir / name).write_bytes(data)
        index = out_dir / "index.html"
        index.write_text(self.html, encoding="utf-8")
        return index


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _table(df: pd.DataFrame, cols: Sequence[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c, _, f in cols:
            v = r.get(c)
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                s = "-"
            elif f:
                s = format(v, f)
            else:
                s = str(v)
            cells.append(f"<td>{html.escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:13px}
.ok{color:#1a7f37}.warn{color:#b42318;font-weight:bold}
"""


def build_report(
    df: pd.DataFrame,
    estimates: pd.DataFrame | None,
    *,
    title: str,
    design: str | None = None,
    truth: float | None = None,
    outcome: str = "units",
    source_note: str = "",
    embed: bool = False,
    seed: int = 0,
) -> Report:
    """Figures and the HTML page for one experiment.

    ``estimates``: running estimates (estimator, n_periods, effect, se, ci_low, ci_high,
    cs_low, cs_high); None or empty gives a page without the running-estimate figure.
    ``embed`` puts the PNGs into the page as data URIs (one self-contained file).
    """
    d = normalise_panel(df, outcome)
    figs: dict[str, bytes] = {}
    sections: list[str] = []

    def img(name: str, alt: str) -> str:
        data_uri = "data:image/png;base64," + base64.b64encode(figs[name]).decode()
        src = data_uri if embed else name
        return f'<img src="{src}" alt="{html.escape(alt)}" onerror="this.dataset.broken=1">'

    n_prod, n_per = d["product"].nunique(), d["period"].nunique()
    n_black = int(d["blackout"].sum())
    head = (
        f"<p>{n_prod} products x {n_per} periods; design <b>{html.escape(design or 'unknown')}</b>; "
        f"{int(d['treated'].sum())} treated cells, {n_black} blackout cells. {html.escape(source_note)}</p>"
    )

    figs["assignment.png"] = _png(assignment_heatmap(d))
    sections.append("<h2>Assignment</h2>" + img("assignment.png", "assignment heatmap"))

    if estimates is not None and len(estimates):
        figs["running_estimates.png"] = _png(running_estimates_figure(estimates, truth))
        latest = (
            estimates.sort_values("n_periods", kind="stable")
            .groupby("estimator", sort=False)
            .tail(1)
        )
        sections.append(
            "<h2>Running estimates</h2>"
            + _table(
                latest,
                [
                    ("estimator", "estimator", ""),
                    ("n_periods", "periods", ""),
                    ("effect", "effect", "+.3f"),
                    ("se", "SE", ".3f"),
                    ("ci_low", "95% low", "+.3f"),
                    ("ci_high", "95% high", "+.3f"),
                    ("cs_low", "CS low", "+.3f"),
                    ("cs_high", "CS high", "+.3f"),
                ],
            )
            + '<p class="note">Shaded: 95% interval at each look (valid for one look). Dashed: the '
            "anytime-valid confidence sequence, valid at every look simultaneously.</p>"
            + img("running_estimates.png", "running estimates")
        )
    else:
        sections.append("<h2>Running estimates</h2><p class='note'>No estimates published yet.</p>")

    try:
        fits = pre_period_fits(to_panel(d, outcome), seed=seed)
    except AnalysisError:
        fits = []
    if fits:
        figs["pre_period_fit.png"] = _png(pre_period_figure(fits))
        sections.append(
            "<h2>Pre-period fit (synthetic-control estimators)</h2>"
            + _table(
                pd.DataFrame(
                    [
                        {"estimator": f.estimator, "rmse": f.pre_rmse, "effect": f.effect}
                        for f in fits
                    ]
                ),
                [
                    ("estimator", "estimator", ""),
                    ("rmse", "pre-period RMSE", ".3f"),
                    ("effect", "effect", "+.3f"),
                ],
            )
            + img("pre_period_fit.png", "pre-period fit")
        )
    else:
        sections.append(
            "<h2>Pre-period fit</h2><p class='note'>The design has no common pre-period "
            "(not a block design), so synthetic-control estimators do not apply.</p>"
        )

    srm = sample_ratio_check(d)
    bal = covariate_balance(d, outcome)
    figs["balance.png"] = _png(balance_figure(d, bal))
    if srm is None:
        srm_html = "<p class='note'>No randomised cells yet.</p>"
    else:
        cls = "warn" if srm.pvalue < 0.001 else "ok"
        srm_html = (
            f"<p class='{cls}'>Sample ratio: {srm.treated} of {srm.n} independent draws "
            f"({srm.level}s) treated, share {srm.share:.3f} against design probability "
            f"{srm.expected_share:.3f}; binomial test p = {srm.pvalue:.3g}"
            f"{' - investigate the assignment pipeline' if srm.pvalue < 0.001 else ''}.</p>"
        )
    sections.append(
        "<h2>Balance and sample ratio</h2>"
        + srm_html
        + _table(
            bal,
            [
                ("covariate", "covariate", ""),
                ("mean_treated", "treated", ".3f"),
                ("mean_control", "control", ".3f"),
                ("smd", "SMD", "+.3f"),
            ],
        )
        + img("balance.png", "balance")
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>{head}
{"".join(sections)}
<p class="note">pricelab report; figures are PNG files next to this page.</p>
</body></html>
"""
    return Report(page, {} if embed else figs)
