"""The notebook API: what the CLI reads and fits, as pandas objects.

A thin facade over the same code as the commands: the estimates topic is read by
``pricelab estimates``'s reader (``streams.client.estimates``), the panel by ``pricelab panel
export``'s (``streams.client.panel``), and :func:`analyze` fits as ``pricelab analyze`` does.
Settings are the CLI's (the ``PRICELAB_`` environment variables), overridden by the
arguments; every function also runs inside a notebook's event loop (``pricelab._sync``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import click
import pandas as pd
from pydantic import SecretStr, ValidationError

from analysis.adaptive_offline import moving_allocation
from analysis.cli import analyst_cells, build_estimator
from analysis.errors import AnalysisError, PanelError
from analysis.panel import Panel
from analysis.reader import ReadPolicy, late_start_sentence
from analysis.results import EstimateResult
from controller.errors import ConfigurationError
from controller.settings import KafkaSettings, RedisSettings, Settings, load_settings
from core.errors import PricelabError
from core.ports import metric_name
from pricelab._sync import run
from streams.client.estimates import (
    all_estimates,
    is_verdict,
    latest_of,
    latest_verdict,
    primary_estimators,
)
from streams.client.known import check_experiment_async
from streams.client.panel import read_panel


class NotPublished(PricelabError):
    """No estimate of a known experiment on the estimates topic: no look yet (an unknown id
    is :class:`UnknownExperiment`)."""


#: the columns an estimates frame starts with (the rest follow in the message's order)
_LEAD = ("experiment", "as_of", "metric", "estimator", "segment")


def settings(*, bootstrap_servers: str | None = None, redis_url: str | None = None) -> Settings:
    """The CLI's settings (``PRICELAB_`` environment variables), with the broker and the
    Redis URL replaced where given; a bad value raises ``ConfigurationError``.
    Example: ``pricelab.settings(bootstrap_servers="127.0.0.1:9092")``.
    """
    base = load_settings()
    update: dict[str, Any] = {}
    if bootstrap_servers is not None:
        kafka = base.kafka.model_dump() | {"bootstrap_servers": bootstrap_servers}
        update["kafka"] = _valid(KafkaSettings, kafka, "bootstrap_servers")
    if redis_url is not None:
        redis = base.redis.model_dump() | {"url": SecretStr(redis_url)}
        update["redis"] = _valid(RedisSettings, redis, "redis_url")
    return base.model_copy(update=update) if update else base


def _valid(model: Any, values: dict[str, Any], argument: str) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ConfigurationError(f"{argument}: {msg}") from None


def _settings(
    given: Settings | None, bootstrap_servers: str | None, redis_url: str | None
) -> Settings:
    if given is None:
        return settings(bootstrap_servers=bootstrap_servers, redis_url=redis_url)
    if bootstrap_servers is None and redis_url is None:
        return given
    raise ConfigurationError("give either settings or bootstrap_servers/redis_url, not both")


def _messages(experiment: str, config: Settings, idle: float) -> list[dict[str, Any]]:
    """The experiment's messages on the estimates topic (estimates and verdicts), in the
    order published; none of an id the store does not know raises UnknownExperiment."""
    found = run(lambda: all_estimates(config, experiment, idle))
    if not found:  # an unknown id, or no look yet: the store tells them apart
        run(lambda: check_experiment_async(config, experiment))
    return found


def estimates(
    experiment: str,
    *,
    latest: bool = False,
    bootstrap_servers: str | None = None,
    redis_url: str | None = None,
    settings: Settings | None = None,
    idle: float = 2.0,
) -> pd.DataFrame:
    """The estimates of ``experiment`` on the estimates topic, one row per message, as
    ``pricelab estimates --json`` prints them (verdicts are not estimates: see
    :func:`verdict`).

    ``latest``: only the latest of each metric, estimator and segment, in the table's order
    (overall first, then each segment; units, revenue, profit, price, elasticity; the
    design's primary estimator of each first). Without it, every look in publication order:
    the running estimates. Column ``primary`` is True on the design's primary estimator of
    each metric (the one the verdict and the report read). ``as_of`` is a UTC
    timestamp. The topic is read until every partition has caught up with the moment of the
    call (``idle``: seconds of broker answers without news that also end a partition).

    Raises ``UnknownExperiment`` when the topic holds nothing of ``experiment`` and no
    experiment has that id (Redis, at ``redis_url``, is asked then), ``NotPublished`` when
    the analysis worker has not looked yet, and ``ServiceUnavailable`` when the broker or
    Redis does not answer, each with one sentence.
    Example: ``pricelab.estimates("walkthrough", latest=True)[["metric", "estimator",
    "effect"]]``.
    """
    config = _settings(settings, bootstrap_servers, redis_url)
    docs = [d for d in _messages(experiment, config, idle) if not is_verdict(d)]
    if not docs:
        raise NotPublished(
            f"no estimate of experiment {experiment!r} on {config.topics.estimates} yet: "
            "wait for the analysis worker's first look"
        )
    rows = list(latest_of(docs).values()) if latest else docs
    primary = primary_estimators(docs)
    frame = pd.DataFrame.from_records(rows)
    frame["primary"] = [
        primary.get((metric_name(r.get("metric")), r.get("segment") or "", r.get("arm") or ""))
        == r["estimator"]
        for r in rows
    ]
    lead = [c for c in _LEAD if c in frame.columns]
    frame = frame[lead + [c for c in frame.columns if c not in lead]]
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True, format="ISO8601")
    return frame


def verdict(
    experiment: str,
    *,
    bootstrap_servers: str | None = None,
    redis_url: str | None = None,
    settings: Settings | None = None,
    idle: float = 2.0,
) -> pd.Series | None:
    """The latest verdict the analysis worker published for ``experiment`` (``verdict``:
    ship, do_not_ship, no_difference or keep_running; the decision metric, the rule and the
    reason, the relative effect and its confidence sequence, guardrails, ``more_days``), as a
    Series named by the experiment; None when no verdict has been published yet. An id no
    experiment has raises ``UnknownExperiment`` (Redis, at ``redis_url``, is asked when the
    topic holds nothing of it), never None.
    Example: ``pricelab.verdict("walkthrough")["verdict"]``.
    """
    config = _settings(settings, bootstrap_servers, redis_url)
    found = latest_verdict(_messages(experiment, config, idle))
    if found is None:
        return None
    last = dict(found)
    last.pop("kind", None)
    return pd.Series(last, name=experiment, dtype=object)


def panel(
    experiment: str,
    *,
    redis_url: str | None = None,
    settings: Settings | None = None,
) -> pd.DataFrame:
    """The panel the analysis worker analyses for ``experiment``, as ``pricelab panel
    export`` writes it: one row per product and completed period, with ``product``,
    ``period``, ``period_start`` (in the experiment's time zone), ``segment`` when the spec
    names segments, the outcomes (units, revenue, profit when the spec gives unit costs,
    price), ``treated``, ``probability`` and ``blackout``; for a spec that lists ``arms:``,
    ``arm``, each cell's arm by name (``treated`` is then 1 for every arm but control:
    :func:`analyze` refuses to lump more than two arms together that way).

    Read as of the stack's clock (the one its controller runs on), as the CLI reads it.
    Raises ``UnknownExperiment`` for an id no experiment has, ``NoCompletedPeriod`` before its first
    period ends and ``ServiceUnavailable`` when Redis does not answer, each with one sentence.
    Example: ``df = pricelab.panel("walkthrough")``.
    """
    config = _settings(settings, None, redis_url)
    return run(lambda: read_panel(config, experiment))


def analyze(
    df: pd.DataFrame,
    outcome: str = "units",
    *,
    method: str = "fe",
    unit: str = "product",
    time: str = "period",
    treated: str = "treated",
    probability: str | float | None = "probability",
    blackout: str | None = "blackout",
    covariates: Sequence[str] = (),
    se: str | None = None,
    seed: int | None = None,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    missing: str = "zero",
    currency: str | None = None,
    rates: Mapping[str, float] | None = None,
    launch: str | None = None,
) -> EstimateResult:
    """Fit ``method`` to ``outcome`` of a long panel, as ``pricelab analyze`` does, and return
    the result object: ``effect``, ``se``, ``df``, ``conf_int(alpha)``, ``pvalue()``,
    ``summary_frame(alpha)`` and ``relative(alpha)`` (the effect relative to the control mean,
    with its Fieller interval).

    The defaults read a panel of :func:`panel` or ``pricelab simulate --out``: ``product`` x
    ``period`` cells, ``treated``, and ``probability`` and ``blackout`` where the table has
    them (None: not used). ``probability`` may also be another column, or one number in (0, 1)
    for every cell (``probability=0.5``); a name that is not a column is refused, for
    ``probability`` and ``blackout`` alike.

    The table is read as the command reads its file: a period column of dates written with
    numbers day and month (03/04/2025) is ordered as dates, never as text, and an order the
    data does not settle is refused unless ``dayfirst`` (True: 3 April, False: March 4) or
    ``date_format`` (e.g. ``"%d/%m/%Y"``) says it, as ``--dayfirst``/``--date-format`` do; a
    numeric column written with decimal commas (``"169,83"``) is refused too (read the file
    with ``pandas.read_csv(..., decimal=",")``). Methods are ``pricelab analyze``'s (fe, dm,
    ht, did, sdid, ...); ``se`` and ``seed`` go to the estimator. A panel or method that
    cannot be fitted raises ``AnalysisError`` with one sentence.

    The rows become cells as every command reads them (:mod:`analysis.reader`): product ids
    as text, several rows of one product and period summed (a return netted into its sale),
    and a product-period without a row zero sales from the product's first period (or its
    ``launch`` column) to the end (``missing="zero"``; ``"drop"`` leaves it out, and a
    balanced estimator then refuses the table). A filled cell takes the product's treated,
    probability and blackout when they are constant within it; when they vary, the table is
    refused. Amounts in several currencies (``currency``: the column, default ``currency``
    when the table has one) are refused unless ``rates`` ({currency: value of one unit})
    converts them. What reading did is in ``result.details["reading_notes"]``.
    Example: ``pricelab.analyze(df, "revenue", method="fe").summary_frame()``.
    """
    if probability == "probability" and probability not in df.columns:
        probability = None  # the default: used where the table has it
    if blackout == "blackout" and blackout not in df.columns:
        blackout = None  # likewise; another name that is not a column is refused
    if treated == "treated" and "arm" in df.columns and df["arm"].nunique() > 2:
        arms = ", ".join(sorted(map(str, df["arm"].dropna().unique())))
        raise AnalysisError(
            f"the table has {df['arm'].nunique()} arms ({arms}), and its 'treated' column lumps "
            "every arm but control together: compare them with `pricelab analyze FILE --arm arm "
            "--control NAME`, or name a 0/1 column of two arms as treated="
        )
    if moving_allocation(df, time):  # an adaptive ladder's panel (docs/adaptive.md)
        raise AnalysisError(
            f"method={method!r} assumes each cell's arm was drawn with a fixed allocation, but "
            "the table's probability_<arm> columns move between periods (an adaptive ladder): "
            "the allocation moved with the data, so it is biased here; `pricelab analyze FILE "
            "--unit product --time period --spec SPEC` gives AIPW on the recorded probabilities."
        )
    try:
        policy = ReadPolicy(missing=missing, currency=currency, rates=rates, launch=launch,
                            dayfirst=dayfirst, date_format=date_format)  # fmt: skip
        cells, column = analyst_cells(
            df,
            unit=unit,
            time=time,
            sums=(outcome,),
            describe=(treated, blackout, *covariates),
            money=(outcome,),
            probability=None if probability is None else str(probability),
            policy=policy,
        )
        try:
            fit = Panel.from_long(
                cells.frame,
                unit=unit,
                time=time,
                outcome=outcome,
                treated=treated,
                probability=column,
                blackout=blackout,
                covariates=list(covariates),
            )
        except PanelError as exc:  # unbalanced because products start late: say so
            late = late_start_sentence(cells.frame, unit, time) if missing == "zero" else None
            if late is None or not str(exc).startswith("The panel is unbalanced"):
                raise
            raise PanelError(late) from None
        result = build_estimator(method, se, seed).fit(fit).result
    except AnalysisError as exc:  # the command's sentences, with its options as arguments
        said = _as_arguments(str(exc))
        if said == str(exc):
            raise
        raise type(exc)(said) from None
    except PricelabError:
        raise
    except click.BadParameter as exc:  # build_estimator's refusal of se
        raise AnalysisError(_as_arguments(exc.message)) from None
    except ValueError as exc:
        said = _as_arguments(str(exc).strip())
        raise AnalysisError(said.splitlines()[0] if said else type(exc).__name__) from None
    if not isinstance(result, EstimateResult):
        raise AnalysisError(f"method {method!r} gives no single estimate; use its own API")
    result.details["reading_notes"] = list(cells.notes)
    return result


#: the command's options, in the sentences :func:`analyze` shares with it, as its arguments
#: (an option in a whole command line, ``pricelab analyze --probability 0.5``, stays)
_ARGUMENTS = tuple(
    (re.compile(r"(?<!analyze )" + option), argument)
    for option, argument in (
        (r"--probability ", "probability="),
        (r"--dayfirst\b", "dayfirst=True"),
        (r"--monthfirst\b", "dayfirst=False"),
        (r"--date-format ", "date_format="),
        (r"--decimal ,", "decimal=',' to pandas.read_csv"),
        (r"--se\b", "se"),
        (r"--missing drop\b", 'missing="drop"'),
        (r"--launch COL\b", 'launch="COLUMN"'),
        (r"--rates\b", "rates"),
        (r"--currency COL\b", 'currency="COLUMN"'),
        (r"--rates FILE \(columns currency,rate\)", "rates={currency: rate}"),
    )
)


def _as_arguments(message: str) -> str:
    for option, argument in _ARGUMENTS:
        message = option.sub(argument, message)
    return message
