"""Analyst report: figures show what the panel says, checks flag what they should, the page
carries every figure inline, and the running estimates are the worker's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle
from typer.testing import CliRunner

from analysis.estimators.crossover import DifferenceInMeansEstimator
from analysis.report import (
    assignment_heatmap,
    build_report,
    covariate_balance,
    pre_period_fits,
    replay_estimates,
    sample_ratio_check,
    to_panel,
)


def _panel(
    W: np.ndarray, P: np.ndarray, B: np.ndarray | None = None, seed: int = 0
) -> pd.DataFrame:
    n, T = W.shape
    rng = np.random.default_rng(seed)
    level = np.asarray(rng.uniform(20, 50, size=n))
    Y = level[:, None] + rng.normal(0, 2, (n, T)) + 3.0 * W
    return pd.DataFrame(
        {
            "product": np.repeat([f"p{i:02d}" for i in range(n)], T),
            "period": np.tile(np.arange(T), n),
            "units": Y.ravel(),
            "treated": W.ravel().astype(int),
            "probability": P.ravel(),
            "blackout": (np.zeros_like(W) if B is None else B).ravel().astype(bool),
            "width": np.repeat(rng.normal(10, 2, n), T),
        }
    )


def _switchback(n: int = 20, T: int = 8, seed: int = 0) -> pd.DataFrame:
    W = np.random.default_rng(seed).random((n, T)) < 0.5
    return _panel(W, np.full((n, T), 0.5), seed=seed)


def test_heatmap_hatches_each_blackout_run_and_colours_treatment() -> None:
    n, T = 6, 10
    W = np.zeros((n, T), bool)
    W[:3, 5:] = True
    B = np.zeros((n, T), bool)
    B[:, 5:7] = True  # one run of two cells per product
    B[0, 0] = True  # and one more on the first product
    fig = assignment_heatmap(
        _panel(W, np.where(np.arange(T) >= 5, 0.5, 0.0)[None, :].repeat(n, 0), B)
    )
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert len(hatched) == n + 1
    img = ax.images[0].get_array()
    assert (
        np.asarray(img)[np.asarray(img) == 2].size
    ) == W.sum()  # treated cells in the arm colour
    assert (np.asarray(img) == 1).sum() == n * 5  # pre-period (P = 0) shown as outside the window


def test_sample_ratio_flags_a_broken_assignment() -> None:
    ok = sample_ratio_check(_switchback(40, 10))
    assert ok is not None and ok.level == "cell" and ok.n == 400 and ok.pvalue > 0.001
    n, T = 40, 10
    W = np.random.default_rng(1).random((n, T)) < 0.8  # pipeline treats 80% under a 50% design
    bad = sample_ratio_check(_panel(W, np.full((n, T), 0.5)))
    assert bad is not None and bad.pvalue < 1e-6 and bad.share > 0.7


def test_sample_ratio_counts_products_for_fixed_groups() -> None:
    n, T = 30, 8
    W = np.zeros((n, T), bool)
    W[:15, 4:] = True
    P = np.where(np.arange(T) >= 4, 0.5, 0.0)[None, :].repeat(n, 0)
    srm = sample_ratio_check(_panel(W, P))
    assert srm is not None and srm.level == "product" and srm.n == 30 and srm.treated == 15
    assert srm.pvalue == pytest.approx(1.0)


def test_covariate_balance_reports_the_pre_period_gap() -> None:
    n, T = 10, 6
    W = np.zeros((n, T), bool)
    W[:5, 3:] = True
    P = np.where(np.arange(T) >= 3, 0.5, 0.0)[None, :].repeat(n, 0)
    df = _panel(W, P)
    df.loc[df["product"].isin([f"p{i:02d}" for i in range(5)]), "units"] += 10.0
    bal = covariate_balance(df).set_index("covariate")
    pre = df[df["period"] < 3].groupby("product")["units"].mean()
    treated, control = pre.iloc[:5].mean(), pre.iloc[5:].mean()
    assert bal.loc["pre-period outcome", "mean_treated"] == pytest.approx(treated)
    assert bal.loc["pre-period outcome", "mean_control"] == pytest.approx(control)
    assert bal.loc["pre-period outcome", "smd"] == pytest.approx(
        (treated - control) / pre.std(ddof=1)
    )
    assert "width" in bal.index


def test_pre_period_fit_only_for_block_designs() -> None:
    assert pre_period_fits(to_panel(_switchback())) == []
    n, T = 12, 10
    W = np.zeros((n, T), bool)
    W[8:, 6:] = True
    P = np.where(np.arange(T) >= 6, 0.5, 0.0)[None, :].repeat(n, 0)
    fits = pre_period_fits(to_panel(_panel(W, P)), estimators=("sc", "difp"))
    assert [f.estimator for f in fits] == ["sc", "difp"]
    for f in fits:
        assert f.first_treated == 6 and f.synthetic.shape == (T,)
        assert np.isfinite(f.pre_rmse)


def test_replay_runs_the_worker_after_every_period() -> None:
    df = _switchback(20, 8)
    est = replay_estimates(df, experiment="x", design="random-days", estimators=["dm"])
    assert list(est["n_periods"]) == list(range(2, 9))
    last = est.iloc[-1]
    direct = DifferenceInMeansEstimator().fit(to_panel(df)).result
    assert last["effect"] == pytest.approx(direct.effect)
    assert last["cs_low"] < last["ci_low"] and last["cs_high"] > last["ci_high"]


def test_the_page_is_one_file_with_every_figure_inline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import base64
    import re

    df = _switchback()
    est = replay_estimates(df, experiment="x", design="random-days", estimators=["dm"])
    report = build_report(df, est, title="t <&>", design="random-days")
    index = report.write(tmp_path / "rep")
    assert index == tmp_path / "rep" / "index.html"
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["index.html"]
    html = index.read_text()
    assert "t &lt;&amp;&gt;" in html
    assert {"assignment.png", "running_estimates.png", "balance.png"} <= set(report.figures)
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert len(srcs) == len(report.figures)
    inline = [
        base64.b64decode(s.split(",", 1)[1]) for s in srcs if s.startswith("data:image/png;base64,")
    ]
    assert len(inline) == len(srcs)  # nothing refers to a file next to the page
    assert sorted(inline) == sorted(report.figures.values())
    assert all(png[:4] == b"\x89PNG" for png in inline)
    # --out FILE.html: the page goes there, alone
    page = report.write(tmp_path / "mail" / "exp.html")
    assert page == tmp_path / "mail" / "exp.html" and page.read_text() == html
    assert [p.name for p in (tmp_path / "mail").iterdir()] == ["exp.html"]


def test_report_cli_offline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streams.cli import app

    panel = tmp_path / "panel.csv"
    _switchback().to_csv(panel, index=False)
    out = tmp_path / "rep"
    args = ["report", "exp-1", "--out", str(out), "--panel", str(panel), "--design", "random-days"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.iterdir()] == ["index.html"]
    html = (out / "index.html").read_text()
    # an offline report has no verdict and says why, in the verdict's place at the top
    assert html.index('id="verdict"') < html.index("<h2>Scorecard</h2>")
    assert "built offline from a panel file" in html
    # --out FILE.html and the old --embed flag (figures are inline anyway)
    res = CliRunner().invoke(app, [*args[:3], str(tmp_path / "one.html"), *args[4:], "--embed"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "one.html").read_text().count('src="data:image/png;base64,') == 3


def test_segment_estimates_get_their_own_table_not_the_running_lines() -> None:
    df = _switchback()
    est = replay_estimates(df, experiment="x", design="random-days", estimators=["dm"])
    seg = est.tail(2).assign(segment=["shoes", "shoes"], effect=[99.0, 77.0], pvalue_bh=0.0123)
    seg.loc[seg.index[0], "n_periods"] = 3  # an earlier look of the segment
    both = pd.concat([est.assign(segment=None), seg], ignore_index=True)
    html = build_report(df, both, title="t", design="random-days").html
    assert "Segments (latest look)" in html
    table = html.split("Segments (latest look)")[1]
    assert "<td>shoes</td>" in table and "+77.000" in table and "+99.000" not in table
    assert "0.0123" in table
    # the overall running table shows the whole experiment's latest dm, not a segment's
    running = html.split("Running estimates")[1].split("Segments")[0]
    assert "+77.000" not in running and f"{est.iloc[-1]['effect']:+.3f}" in running
    assert "Segments" not in build_report(df, est, title="t", design="random-days").html


def test_report_cli_offline_with_the_spec_replays_the_verdict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the experiment's spec the replayed worker decides at each look as it does live:
    the page opens with its verdict on the spec's decision metric."""
    from streams.cli import app

    df = _switchback(40, 8)
    panel = tmp_path / "panel.csv"
    df.to_csv(panel, index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "id: exp-1\ndesign: random-days\nproducts: ["
        + ", ".join(sorted(df["product"].unique()))
        + "]\ntreatment_policy: a\ncontrol_policy: b\ndecision_metric: units\n"
        "start: 2026-03-02T00:00:00+00:00\nend: 2026-03-10T00:00:00+00:00\n"
    )
    out = tmp_path / "exp.html"
    args = ["report", "exp-1", "--out", str(out), "--panel", str(panel), "--spec", str(spec)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    band = html.split('<section class="verdict', 1)[1].split("</section>")[0]
    # +3 units on a level of 20-50 at every treated cell: decisive after 8 periods
    assert '<p class="word">Ship</p>' in band, band
    assert "Decision metric <b>units</b>" in band and "Rule: ship when" in band


def test_report_cli_offline_shows_a_verdict_from_the_estimates_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--estimates takes the topic's messages as JSON lines, verdicts among them."""
    import json

    from streams.cli import app

    df = _switchback()
    panel = tmp_path / "panel.csv"
    df.to_csv(panel, index=False)
    est = replay_estimates(df, experiment="exp-1", design="random-days", estimators=["dm"])
    lines = [r.to_json(date_format="iso") for _, r in est.iterrows()]
    verdict = {
        "v": 1, "kind": "verdict", "experiment": "exp-1", "as_of": "2026-01-09T00:00:00Z",
        "verdict": "keep_running", "metric": "units", "estimator": "dm", "rule": "the rule",
        "reason": "units +9.0% [-1.0%, +19.0%] still includes 0", "effect": 3.0,
        "relative_effect": 0.09, "relative_cs_low": -0.01, "relative_cs_high": 0.19,
        "n_units": 20, "n_periods": 8, "guardrails": [], "more_days": 3.2,
    }  # fmt: skip
    messages = tmp_path / "est.jsonl"
    messages.write_text("\n".join([*lines, json.dumps(verdict)]) + "\n")
    out = tmp_path / "rep.html"
    args = ["report", "exp-1", "--out", str(out), "--panel", str(panel), "--design",
            "random-days", "--estimates", str(messages)]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    band = html.split('<section class="verdict', 1)[1].split("</section>")[0]
    assert '<p class="word">Keep running</p>' in band
    assert "Inconclusive: about 4 more days needed" in band and "still includes 0" in band
    # the verdict is no estimate: the scorecard's units row is dm's last estimate
    assert f"<td>units</td><td>{est.iloc[-1]['effect']:+.3f}</td>" in html


def test_an_offline_panel_without_the_experiments_cells_is_one_sentence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streams.cli import app

    panel = tmp_path / "panel.csv"
    _switchback().assign(experiment="exp-1").to_csv(panel, index=False)
    header = tmp_path / "header.csv"
    header.write_text(panel.read_text().splitlines()[0] + "\n")
    for path, said in (
        (panel, f"{panel} has no cells of experiment 'exp-2' (its experiments: exp-1)"),
        (header, f"{header} has no cells of experiment 'exp-2'"),
    ):
        args = ["report", "exp-2", "--out", str(tmp_path / "r"), "--panel", str(path)]
        res = CliRunner().invoke(app, [*args, "--design", "random-days"])
        assert res.exit_code == 2, res.output
        assert res.output.strip() == f"error: {said}"
        assert not (tmp_path / "r").exists()


def test_an_offline_ladder_reports_each_arm_and_the_curves_analyze_gives(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`pricelab report --panel` of a price ladder (the demo's, simulated): with its spec, the
    worker is replayed as it runs live, each arm against the control, the verdict naming an
    arm and the curves, whose recommended price is `pricelab analyze --method demand`'s on the
    same file; with --design alone, each arm still (never pooled as one treatment), and the
    page says why there is no curve."""
    import json
    import re

    from lab.simulate import run_spec
    from streams.cli import app
    from streams.live.demo import DemoConfig, demo_market, demo_spec

    cfg = DemoConfig(products=24, days=6, seed=3, ladder=True)
    market = demo_market(cfg)
    spec = demo_spec(cfg, market)
    panel, spec_file = tmp_path / "ladder.csv", tmp_path / "ladder.json"
    run_spec(spec, market).panel.to_csv(panel, index=False)
    spec_file.write_text(spec.model_dump_json())
    out = tmp_path / "r"
    args = ["report", spec.id, "--out", str(out), "--panel", str(panel)]
    res = CliRunner().invoke(app, [*args, "--spec", str(spec_file)])
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text()
    for arm in ("p90", "p95", "p105"):
        assert f'<tr data-metric="profit" data-arm="{arm}">' in html
    assert re.search(r"(leading|shipped) arm p(90|95|105):", html)
    analyze = CliRunner().invoke(
        app,
        ["analyze", str(panel), "--unit", "product", "--time", "period", "--arm", "arm",
         "--control", "list", "--probability", "probability", "--blackout", "blackout",
         "--method", "demand", "--units", "units", "--revenue", "revenue", "--profit",
         "profit", "--json"],
    )  # fmt: skip
    assert analyze.exit_code == 0, analyze.output
    curve = json.loads(analyze.output)
    best = curve["optimal_price_ratio"]
    lo, hi = curve["optimal_price_ratio_ci_low"], curve["optimal_price_ratio_ci_high"]
    assert (
        f"the fitted profit curve peaks at <b>x{best:.3f}</b> of the control's "
        f"[{lo:.3f}, {hi:.3f}]" in html
    )
    assert f'<g class="recommended" data-price-ratio="{best:g}">' in html
    # without the spec: each arm against the panel's control, and no curve, said why
    res = CliRunner().invoke(app, [*args, "--design", "random-days"])
    assert res.exit_code == 0, res.output
    html = (out / "index.html").read_text()
    for arm in ("p90", "p95", "p105"):
        assert f'<tr data-metric="units" data-arm="{arm}">' in html
    assert "<tr><td>units</td>" not in html.split("<h2>Running estimates</h2>")[0]
    assert "No demand curve among the estimates" in html and "give --spec" in html


def test_an_offline_panel_with_several_rows_per_cell_reads_as_its_cells(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A panel exported one row per sale (a cell's units split over rows, a return as a
    negative row) is the same panel as its cells, read by the one reader: the same page, not
    pandas' 'Index contains duplicate entries' traceback."""
    from streams.cli import app

    cells = _switchback(n=8, T=6)
    sale = cells.assign(units=cells["units"] + 1.0)
    ret = cells.assign(units=-1.0)
    split = pd.concat([sale, ret], ignore_index=True).sample(frac=1.0, random_state=1)
    pages = []
    for name, df in (("cells", cells), ("split", split)):
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        out = tmp_path / f"{name}.html"
        args = ["report", "exp-1", "--out", str(out), "--panel", str(path), "--design",
                "random-days"]  # fmt: skip
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        pages.append(out.read_text().replace(f"{name}.csv", "PANEL"))
    assert pages[0] == pages[1]


@pytest.mark.parametrize(
    ("column", "values", "said"),
    [
        (
            "treated",
            {0: "no", 1: "yes"},
            "Treatment column 'treated' must be 0/1 (or boolean) in every row; it has 'no'.",
        ),  # fmt: skip
        (
            "blackout",
            {False: "no", True: "yes"},
            "Blackout column 'blackout' must be 0/1 (or boolean) in every row; it has 'no'.",
        ),  # fmt: skip
    ],
)
def test_an_offline_panel_whose_flags_are_words_is_one_sentence(  # type: ignore[no-untyped-def]
    tmp_path, capsys, column: str, values: dict[object, str], said: str
) -> None:
    """``treated`` written no/yes stopped the report with a ValueError's traceback;
    ``blackout`` written no/yes was read as every cell blacked out (any word is true), and
    the page said "No verdict" with exit 0."""
    from streams.cli import main

    panel = tmp_path / "panel.csv"
    df = _switchback()
    df.assign(**{column: df[column].map(values)}).to_csv(panel, index=False)
    args = ["report", "exp-1", "--out", str(tmp_path / "r"), "--panel", str(panel)]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--design", "random-days"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {said}"
    assert not (tmp_path / "r").exists()


def test_an_offline_panel_saved_as_a_german_export_gives_the_same_page(  # type: ignore[no-untyped-def]
    tmp_path, capsys
) -> None:
    """``;`` between fields and ``0,5`` for a half: report had no --decimal, and refused the
    panel with "non-numeric values, e.g. '23,0'" and no way to read it."""
    from streams.cli import main

    df = _switchback()
    plain, german = tmp_path / "plain.csv", tmp_path / "german.csv"
    df.to_csv(plain, index=False)
    german.write_bytes(
        df.to_csv(sep=";", decimal=",", index=False, lineterminator="\r\n").encode("utf-8-sig")
    )
    codes, errors, pages = [], [], []
    for path, extra in ((plain, []), (german, ["--decimal", ","]), (german, [])):
        out = tmp_path / f"{path.stem}{len(extra)}.html"
        args = ["report", "exp-1", "--out", str(out), "--panel", str(path), *extra]
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--design", "random-days"])
        codes.append(exit_.value.code)
        errors.append(capsys.readouterr().err.strip())
        pages.append(out.read_text().replace(path.name, "PANEL") if out.exists() else None)
    assert codes == [0, 0, 2], errors
    assert pages[1] == pages[0]
    assert errors[2].startswith("error: column 'units' holds values like '")
    assert errors[2].endswith("', which looks like decimal commas: pass --decimal ,")


def test_a_column_the_report_does_not_read_is_not_checked_for_decimal_commas(  # type: ignore[no-untyped-def]
    tmp_path, capsys
) -> None:
    """A pack size written ``0,5`` (litres, a label the report never reads) beside numbers
    with decimal points: report refused the panel, saying to pass --decimal , (which would
    have read the file's other numbers wrongly). A column it reads still is checked."""
    from streams.cli import main

    labelled = _switchback().assign(pack="0,5")
    codes, errors = [], []
    for name, df in (("labelled", labelled), ("commas", labelled.assign(units="2,5"))):
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        args = ["report", "exp-1", "--out", str(tmp_path / f"{name}.html"), "--panel", str(path)]
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--design", "random-days"])
        codes.append(exit_.value.code)
        errors.append(capsys.readouterr().err.strip())
    assert codes == [0, 2], errors
    assert (tmp_path / "labelled.html").exists()
    assert errors[1] == (
        "error: column 'units' holds values like '2,5', which looks like decimal commas: pass "
        "--decimal ,"
    )
