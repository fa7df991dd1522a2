"""The notebook API without a broker: the loop-aware runner, ``analyze`` on panels whose
effect is known by hand, the settings' overrides, and one-sentence refusals. The readers run
against the real broker and Redis in tests/integration/test_notebook_api.py."""

from __future__ import annotations

import asyncio
import math
import threading

import pandas as pd
import pytest

import pricelab
from analysis.errors import AnalysisError
from controller.errors import ConfigurationError
from pricelab._sync import run


async def _where() -> tuple[str, bool]:
    await asyncio.sleep(0)
    return threading.current_thread().name, asyncio.get_running_loop().is_running()


async def _fails() -> None:
    raise AnalysisError("the planted refusal")


def test_without_a_running_loop_the_coroutine_runs_on_this_thread() -> None:
    name, running = run(_where)
    assert name == threading.current_thread().name and running


async def test_inside_a_running_loop_it_runs_on_a_worker_thread() -> None:
    # what a Jupyter cell sees: a loop already runs on the calling thread
    refused = _where()
    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        asyncio.run(refused)  # the failure the runner avoids
    refused.close()
    name, running = run(_where)
    assert name.startswith("pricelab") and running


async def test_an_error_inside_reaches_the_caller_unchanged_from_a_loop() -> None:
    with pytest.raises(AnalysisError, match="^the planted refusal$"):
        run(_fails)


def test_an_error_inside_reaches_the_caller_unchanged_without_a_loop() -> None:
    with pytest.raises(AnalysisError, match="^the planted refusal$"):
        run(_fails)


def _panel() -> pd.DataFrame:
    """Two products, each in both arms: within-product differences 2 and 2 (a: 3 - 1,
    b: 4 - 2), arm means 3.5 and 1.5, so every estimator that compares arms says 2."""
    return pd.DataFrame(
        {
            "product": ["a", "a", "b", "b", "c", "c"],
            "period": [0, 1, 0, 1, 0, 1],
            "period_start": pd.to_datetime(["2026-12-07", "2026-12-08"] * 3).tz_localize(
                "Europe/Berlin"
            ),
            "units": [1.0, 3.0, 4.0, 2.0, 5.0, 7.0],
            "treated": [0, 1, 1, 0, 0, 1],
            "probability": [0.5] * 6,
            "blackout": [False] * 6,
        }
    )


def test_analyze_reads_a_panel_by_its_own_column_names() -> None:
    # within-product differences: a 3 - 1 = 2, b 4 - 2 = 2, c 7 - 5 = 2
    result = pricelab.analyze(_panel(), "units", method="fe")
    assert isinstance(result, pricelab.EstimateResult)
    assert result.effect == pytest.approx(2.0)
    assert result.n_units == 3 and result.n_periods == 2
    frame = result.summary_frame(0.1)
    assert frame.loc["fe", "point_estimate"] == pytest.approx(2.0)
    lo, hi = result.conf_int(0.1)
    assert (frame.loc["fe", "ci_lower"], frame.loc["fe", "ci_upper"]) == (lo, hi)


def test_analyze_difference_in_means() -> None:
    # treated cells 3, 4, 7 (mean 14/3); control 1, 2, 5 (mean 8/3): 2
    result = pricelab.analyze(_panel(), method="dm")
    assert result.effect == pytest.approx(14 / 3 - 8 / 3)


def test_analyze_without_the_optional_columns() -> None:
    bare = _panel().drop(columns=["probability", "blackout"])
    assert pricelab.analyze(bare, method="dm").effect == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"method": "no-such"}, "Unknown method 'no-such'"),
        ({"outcome": "revenue"}, "Column(s) ['revenue'] not found"),
        ({"method": "fe", "se": "not-a-method"}, "fe supports se="),
        ({"method": "sdid"}, "This estimator needs a block design"),
    ],
)
def test_analyze_refuses_with_one_sentence(kwargs: dict[str, str], said: str) -> None:
    with pytest.raises(pricelab.PricelabError) as info:
        pricelab.analyze(_panel(), **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(said) and "\n" not in message and message


def test_settings_come_from_the_environment_and_the_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRICELAB_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.1:9092")
    monkeypatch.setenv("PRICELAB_TOPICS__ESTIMATES", "mine.estimates")
    base = pricelab.settings()
    assert base.kafka.bootstrap_servers == "10.0.0.1:9092"
    given = pricelab.settings(bootstrap_servers="127.0.0.1:19092", redis_url="redis://h:1/2")
    assert given.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert given.redis.url.get_secret_value() == "redis://h:1/2"
    assert given.topics.estimates == "mine.estimates"  # the rest as the environment says


def test_a_bad_override_is_one_sentence_naming_the_argument() -> None:
    with pytest.raises(ConfigurationError, match="^bootstrap_servers: .*host:port"):
        pricelab.settings(bootstrap_servers="127.0.0.1:notaport")


def test_settings_and_an_override_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        pricelab.estimates("x", settings=pricelab.settings(), bootstrap_servers="h:1")


def _dated_panel() -> pd.DataFrame:
    """Products a, b in control; c, d treated from the third day on (+3 each). The days are
    written day-first, 11/01/2025 .. 02/02/2025, no day above 12: as text, February's two
    days would sort before January's."""
    days = ["11/01/2025", "12/01/2025", "01/02/2025", "02/02/2025"]
    bumps = {("a", 1): 0.5, ("c", 0): 0.5, ("d", 3): 0.5}
    rows = [
        {
            "product": u,
            "date": day,
            "period": t,
            "units": level + t + 3.0 * (u in "cd" and t >= 2) + bumps.get((u, t), 0.0),
            "treated": int(u in "cd" and t >= 2),
        }
        for u, level in {"a": 10.0, "b": 20.0, "c": 30.0, "d": 40.0}.items()
        for t, day in enumerate(days)
    ]
    return pd.DataFrame(rows)


def _one_sentence(refused: pytest.ExceptionInfo[pricelab.PricelabError]) -> str:
    message = str(refused.value)
    assert message and "\n" not in message
    assert "--" not in message  # a notebook user has keyword arguments, not CLI options
    return message


def test_day_month_dates_the_data_does_not_settle_are_refused_naming_the_arguments() -> None:
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(_dated_panel(), method="did", time="date")
    message = _one_sentence(refused)
    assert "'11/01/2025'" in message or "'12/01/2025'" in message
    assert "dayfirst=True" in message and "date_format=" in message


def test_day_month_dates_are_read_as_the_arguments_say() -> None:
    by_number = pricelab.analyze(_dated_panel(), method="did", time="period")
    for settled in ({"dayfirst": True}, {"date_format": "%d/%m/%Y"}):
        by_date = pricelab.analyze(_dated_panel(), method="did", time="date", **settled)
        assert by_date.effect == pytest.approx(by_number.effect)
        assert by_date.se == pytest.approx(by_number.se)


def test_a_day_that_contradicts_dayfirst_is_one_sentence() -> None:
    df = _dated_panel().replace({"date": {"02/02/2025": "02/13/2025"}})
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(df, method="did", time="date", dayfirst=True)
    assert "'02/13/2025'" in _one_sentence(refused)


def test_decimal_commas_are_named() -> None:
    df = _panel().assign(units=["1,0", "3,0", "4,5", "2,0", "5,0", "7,0"])
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(df, method="fe")
    message = _one_sentence(refused)
    assert "'1,0'" in message and "decimal=','" in message


def test_probability_may_be_one_number_for_every_cell() -> None:
    with_column = pricelab.analyze(_panel(), method="ht")  # its probability column: 0.5
    bare = _panel().drop(columns=["probability"])
    constant = pricelab.analyze(bare, method="ht", probability=0.5)
    assert constant.effect == pytest.approx(with_column.effect)
    assert constant.se == pytest.approx(with_column.se)
    assert pricelab.analyze(bare, method="ht", probability="0.5").effect == constant.effect


def test_the_ht_refusal_names_an_argument_that_works() -> None:
    bare = _panel().drop(columns=["probability"])
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(bare, method="ht")
    assert "probability=0.5 in Python" in str(refused.value)
    assert pricelab.analyze(bare, method="ht", probability=0.5).effect == pytest.approx(
        pricelab.analyze(_panel(), method="ht").effect
    )


@pytest.mark.parametrize(
    ("probability", "said"),
    [
        ("probabilty", "probability='probabilty' is not a column of the panel (its columns are "
                       "product, period, period_start, units, treated, blackout)"),
        (1.5, "probability=1.5 must be strictly between 0 and 1"),
        (0.0, "probability=0.0 must be strictly between 0 and 1"),
    ],
)  # fmt: skip
def test_a_probability_that_is_neither_a_column_nor_a_share_is_refused(
    probability: str | float, said: str
) -> None:
    bare = _panel().drop(columns=["probability"])
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(bare, method="fe", probability=probability)  # type: ignore[arg-type]
    assert _one_sentence(refused).startswith(said)


def test_a_blackout_column_that_is_not_there_is_refused_not_ignored() -> None:
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(_panel(), method="fe", blackout="washout")
    assert "'washout'" in _one_sentence(refused)
    # the default name is used where the table has it, and left out where it has not
    plain = pricelab.analyze(_panel().drop(columns=["blackout"], errors="ignore"), method="fe")
    assert math.isfinite(plain.effect)


def test_more_than_two_arms_are_not_lumped_into_treated() -> None:
    three = _panel().assign(arm=["list", "p95", "p105", "list", "list", "p95"])
    with pytest.raises(pricelab.PricelabError) as refused:
        pricelab.analyze(three, method="fe")
    assert "the table has 3 arms (list, p105, p95)" in str(refused.value)
    two = three.assign(arm=["list", "p95", "p95", "list", "list", "p95"])
    assert pricelab.analyze(two, method="fe").effect == pytest.approx(2.0)
    # naming a 0/1 column of two arms is the analyst's call
    chosen = three.assign(p95=[0, 1, 0, 0, 0, 1])
    assert math.isfinite(pricelab.analyze(chosen, method="dm", treated="p95").effect)
