#!/usr/bin/env python3
"""Writes the four Grafana dashboards of llm-incident-manager to dashboards/*.json.

The dashboards are built with grafana-foundation-sdk (PyPI), whose types and builders are
generated from Grafana's published dashboard schema: scripts/check-grafana.sh type-checks
this file against them (mypy --strict), re-reads every written file through the SDK's
models, and fails when the committed JSON is not what this file writes. Edit this file,
never the JSON; then run `python3 deploy/grafana/generate.py` (inside the venv that
scripts/check-grafana.sh makes) and commit both.

Conventions the check and the integration test rely on:
- every panel and target uses the `${datasource}` variable;
- expressions use only $job, $instance, $__rate_interval, $__interval and $__range;
- every raw metric carries job="$job" (and instance=~"$instance" where a per-replica view
  makes sense); the recording rules of deploy/prometheus carry job="$job" only, as they
  aggregate the instances away (their panels say so);
- store-truth gauges (incidents_active, job_queue_depth) are read with max, never sum;
- no `or vector(0)`: an empty panel means the service has produced nothing yet.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import typing

from grafana_foundation_sdk.builders import (
    barchart,
    bargauge,
    common as common_builders,
    dashboard,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

TAG = "llm-incident-manager"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Label matchers: the whole job, or the replicas chosen in the instance variable.
J = 'job="$job"'
JI = 'job="$job", instance=~"$instance"'

PanelBuilder = typing.TypeVar(
    "PanelBuilder", stat.Panel, timeseries.Panel, bargauge.Panel, barchart.Panel, table.Panel
)


class Target(typing.NamedTuple):
    expr: str
    legend: str = ""


def t(expr: str, legend: str = "") -> Target:
    return Target(expr, legend)


def quantiles(inner: str, by: str = "", legend_suffix: str = "") -> list[Target]:
    """p50, p95 and p99 of a rate of histogram buckets (`inner` yields `le` and `by`)."""
    labels = f"{by}, le" if by else "le"
    return [
        t(f"histogram_quantile({q}, sum by ({labels}) ({inner}))", f"p{int(q * 100)}{legend_suffix}")
        for q in (0.5, 0.95, 0.99)
    ]


def _queries(targets: list[Target], instant: bool, fmt: PromQueryFormat | None) -> list[prometheus.Dataquery]:
    out = []
    for i, target in enumerate(targets):
        q = prometheus.Dataquery().ref_id(chr(ord("A") + i)).datasource(DS).expr(target.expr)
        if target.legend:
            q = q.legend_format(target.legend)
        q = q.instant() if instant else q.range()
        if fmt is not None:
            q = q.format(fmt)
        out.append(q)
    return out


def setup(
    panel: PanelBuilder,
    title: str,
    description: str,
    targets: list[Target],
    *,
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    instant: bool = False,
    fmt: PromQueryFormat | None = None,
) -> PanelBuilder:
    panel = panel.title(title).description(description).datasource(DS).unit(unit).span(w).height(h)
    for q in _queries(targets, instant, fmt):
        panel = panel.with_target(q)
    return panel


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def legend_table() -> common_builders.VizLegendOptions:
    """A legend that lists last and max values, for series counted by label."""
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def ts(title: str, description: str, targets: list[Target], **kw: typing.Any) -> timeseries.Panel:
    panel = setup(timeseries.Panel(), title, description, targets, **kw).fill_opacity(10)
    if len(targets) > 1 or "{{" in targets[0].legend:
        panel = panel.legend(legend_table())
    return panel


def big(title: str, description: str, targets: list[Target], **kw: typing.Any) -> stat.Panel:
    kw.setdefault("w", 8)
    kw.setdefault("h", 5)
    return (
        setup(stat.Panel(), title, description, targets, **kw)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(common.BigValueTextMode.AUTO)
    )


def bars(title: str, description: str, targets: list[Target], **kw: typing.Any) -> bargauge.Panel:
    """Instant values as bars, one per series (label in the legend format)."""
    return (
        setup(bargauge.Panel(), title, description, targets, instant=True, **kw)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
    )


class Board:
    """A dashboard builder that numbers panels and lays them out row by row (24 columns)."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.next_id = 1
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([TAG])
            .editable()
            .timezone("browser")
            .refresh("30s")
            .time("now-1h", "now")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .link(
                dashboard.DashboardLink("LLM Incident Manager")
                .type(model.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
            )
            .with_variable(
                dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
            )
            .with_variable(
                dashboard.QueryVariable("job")
                .label("Job")
                .datasource(DS)
                .query("label_values(build_info, job)")
                .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
                .sort(model.VariableSort.ALPHABETICAL_ASC)
                .current(model.VariableOption(selected=True, text=TAG, value=TAG))
            )
            .with_variable(
                # build_info exists on every replica from start-up: one value per replica.
                dashboard.QueryVariable("instance")
                .label("Instance")
                .datasource(DS)
                .query('label_values(build_info{job="$job"}, instance)')
                .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(model.VariableSort.ALPHABETICAL_ASC)
                .multi(True)
                .include_all(True)
                .all_value(".*")
                .current(model.VariableOption(selected=True, text="All", value="$__all"))
            )
        )

    def row(self, title: str) -> Board:
        self.builder = self.builder.with_row(dashboard.Row(title).id(self._id()))
        return self

    def add(self, *panels: stat.Panel | timeseries.Panel | bargauge.Panel | barchart.Panel | table.Panel) -> Board:
        for panel in panels:
            self.builder = self.builder.with_panel(panel.id(self._id()))
        return self

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def build(self) -> model.Dashboard:
        return self.builder.build()


# ---------------------------------------------------------------------------------------
# Incident Manager Overview: the seed's "Dashboard Example", panel by panel, then a row for
# the background work (jobs, notifications, escalations).


def overview() -> model.Dashboard:
    b = Board(
        "lim-overview",
        "Incident Manager Overview",
        "Traffic, latency and errors of the API, open incidents, LLM use and cost, process "
        "health, and the background work (jobs, notifications, escalations).",
    )
    b.add(
        big(
            "Request Rate",
            "HTTP API requests per second, all replicas (recording rule lim:http_requests:rate5m; "
            "the change is against the start of the time range).",
            [t(f"sum(lim:http_requests:rate5m{{{J}}})", "requests/s")],
            unit="reqps",
        ).show_percent_change(True),
        big(
            "P95 Latency",
            "95th percentile of HTTP API response time over 5 minutes, all replicas "
            "(recording rule lim:http_request_duration_seconds:p95_5m).",
            [t(f"lim:http_request_duration_seconds:p95_5m{{{J}}}", "p95")],
            unit="s",
        )
        .show_percent_change(True)
        .percent_change_color_mode(common.PercentChangeColorMode.INVERTED),
        big(
            "Error Rate",
            "Share of HTTP API requests answered 5xx over 5 minutes, all replicas "
            "(recording rule lim:http_request_errors:ratio_rate5m, the HTTP 5xx alert's number). "
            "The rule has no series while no 5xx was answered: the panel then says so.",
            [t(f"lim:http_request_errors:ratio_rate5m{{{J}}}", "5xx")],
            unit="percentunit",
        )
        .no_value("no 5xx")
        .thresholds(thresholds((None, "green"), (0.01, "orange"), (0.05, "red")))
        .color_mode(common.BigValueColorMode.VALUE)
        .show_percent_change(True)
        .percent_change_color_mode(common.PercentChangeColorMode.INVERTED),
    )
    b.add(
        bars(
            "HTTP Request Rate by Endpoint",
            "Requests per second by route template (`unmatched`: no route), all replicas.",
            [t(f"sort_desc(sum by (path) (lim:http_requests:rate5m{{{J}}}))", "{{path}}")],
            unit="reqps",
            w=24,
        ),
    )
    b.add(
        setup(
            barchart.Panel(),
            "Active Incidents by Severity",
            "Open (not RESOLVED) incidents by severity, as the store counts them "
            "(every replica reports the same count: max, never sum).",
            [t(f"sum by (severity) (lim:incidents_active:max{{{J}}})")],
            w=16,
            instant=True,
            fmt=PromQueryFormat.TABLE,
        )
        .x_field("severity")
        .show_value(common.VisibilityMode.ALWAYS)
        .legend(common_builders.VizLegendOptions().show_legend(False))
        .with_transformation(
            model.DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "severity"}]})
        )
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": "open incidents"}},
            )
        ),
        bars(
            "Oldest Unacknowledged Incident",
            "How long the oldest open incident nobody has acknowledged (NEW or ASSIGNED) has "
            "waited, by severity. No bar: none waits.",
            [
                t(
                    f"time() - min by (severity) (incidents_unacknowledged_oldest_timestamp_seconds{{{J}}})",
                    "{{severity}}",
                )
            ],
            unit="s",
            w=8,
        ).thresholds(thresholds((None, "green"), (900, "orange"), (3600, "red"))),
    )

    b.row("LLM Integration")
    b.add(
        big(
            "LLM Requests (last hour)",
            "Requests made to each LLM provider in the last hour (retries count; cache hits "
            "and the offline classifier do not).",
            [t(f"sum by (provider) (increase(llm_requests_total{{{JI}}}[1h]))", "{{provider}}")],
            w=4,
            h=8,
            instant=True,
        ).graph_mode(common.BigValueGraphMode.NONE),
        big(
            "LLM Tokens (last hour)",
            "Prompt and completion tokens the providers reported in the last hour.",
            [t(f"sum by (provider) (increase(llm_tokens_total{{{JI}}}[1h]))", "{{provider}}")],
            w=4,
            h=8,
            instant=True,
        ).graph_mode(common.BigValueGraphMode.NONE),
        big(
            "LLM Cost (last hour)",
            "USD spent in the last hour by provider, all replicas (recording rule "
            "lim:llm_cost_dollars:increase1h, from the price table).",
            [t(f"sum by (provider) (lim:llm_cost_dollars:increase1h{{{J}}})", "{{provider}}")],
            unit="currencyUSD",
            w=4,
            h=8,
            instant=True,
        ).graph_mode(common.BigValueGraphMode.NONE),
        ts(
            "LLM Latency Distribution",
            "P50, P95 and P99 of LLM provider request time, all providers and operations.",
            quantiles(f"rate(llm_request_duration_seconds_bucket{{{JI}}}[$__rate_interval])"),
            unit="s",
            w=12,
        ),
    )

    b.row("System Health")
    b.add(
        big(
            "Memory",
            "Resident memory of each replica (process_resident_memory_bytes).",
            [t(f"process_resident_memory_bytes{{{JI}}}", "{{instance}}")],
            unit="bytes",
            w=6,
        ),
        bars(
            "CPU",
            "CPU used by each replica; 100% is one core.",
            [t(f"rate(process_cpu_seconds_total{{{JI}}}[$__rate_interval])", "{{instance}}")],
            unit="percentunit",
            w=6,
            h=5,
        )
        .min(0)
        .max(1),
        bars(
            "DB Connections (in use / max)",
            "Share of each replica's connection pool in use (database_connections_in_use / "
            "database_connections_max).",
            [t(f"database_connections_in_use{{{JI}}} / database_connections_max{{{JI}}}", "{{instance}}")],
            unit="percentunit",
            w=6,
            h=5,
        )
        .min(0)
        .max(1)
        .thresholds(thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))),
        bars(
            "Cache Hit Rate",
            "Share of LLM questions answered from the store's cache over 5 minutes, all "
            "replicas (recording rule lim:cache_hit_ratio:rate5m).",
            [t(f"lim:cache_hit_ratio:rate5m{{{J}}}", "{{cache}}")],
            unit="percentunit",
            w=6,
            h=5,
        )
        .min(0)
        .max(1),
    )

    b.row("Jobs, Notifications and Escalations")
    b.add(
        ts(
            "Job Queue Depth",
            "Jobs waiting, due now or later, by type, as the store counts them (max across "
            "replicas: recording rule lim:job_queue_depth:max).",
            [t(f"lim:job_queue_depth:max{{{J}}}", "{{job_type}}")],
            w=8,
        ),
        ts(
            "Job Executions by Status",
            "Attempts ending per second by job type and outcome (a job tried three times "
            "counts three).",
            [
                t(
                    f"sum by (job_type, status) (rate(job_executions_total{{{JI}}}[$__rate_interval]))",
                    "{{job_type}} {{status}}",
                )
            ],
            unit="ops",
            w=8,
        ),
        bars(
            "Dead Jobs (time range)",
            "Jobs given up (attempts ran out, or a permanent failure) in the time range, by type.",
            [t(f"sum by (job_type) (increase(jobs_dead_total{{{JI}}}[$__range]))", "{{job_type}}")],
            w=8,
        ).thresholds(thresholds((None, "green"), (1, "red"))),
    )
    b.add(
        ts(
            "Notifications by Channel and Status",
            "Delivery attempts per second by channel type and outcome (sent; failed: "
            "another attempt follows; dead: none follows), all replicas (recording rule "
            "lim:notifications:rate5m).",
            [t(f"lim:notifications:rate5m{{{J}}}", "{{channel}} {{status}}")],
            unit="ops",
        ),
        bars(
            "Escalations by Policy and Level (time range)",
            "Incidents that reached each level of their escalation policy in the time range.",
            [
                t(
                    f"sum by (policy, level) (increase(escalations_total{{{JI}}}[$__range]))",
                    "{{policy}} level {{level}}",
                )
            ],
        ),
    )
    return b.build()


# ---------------------------------------------------------------------------------------
# HTTP Metrics: the HTTP API (8080), the gRPC API (8081) and API-key refusals.


def http() -> model.Dashboard:
    b = Board(
        "lim-http",
        "HTTP Metrics",
        "The HTTP API (requests, latency by route, in-flight, 4xx/5xx), the gRPC API and "
        "API-key refusals.",
    )
    b.row("HTTP Requests")
    b.add(
        ts(
            "Requests by Method, Path and Status",
            "HTTP API requests per second by method, route template and status code.",
            [
                t(
                    f"sum by (method, path, status) (rate(http_requests_total{{{JI}}}[$__rate_interval]))",
                    "{{method}} {{path}} {{status}}",
                )
            ],
            unit="reqps",
        ),
        ts(
            "Requests in Flight",
            "Requests being served now, by method and route.",
            [t(f"sum by (method, path) (http_requests_in_flight{{{JI}}})", "{{method}} {{path}}")],
        ),
    )
    b.add(
        ts(
            "4xx and 5xx by Path and Status",
            "Client (4xx) and server (5xx) error answers per second by route and status.",
            [
                t(
                    f'sum by (path, status) (rate(http_requests_total{{{JI}, status=~"4..|5.."}}[$__rate_interval]))',
                    "{{status}} {{path}}",
                )
            ],
            unit="reqps",
        ),
        ts(
            "Error Ratio (4xx, 5xx)",
            "Share of requests answered 4xx and 5xx over 5 minutes, all replicas; the 5xx "
            "line is the recording rule lim:http_request_errors:ratio_rate5m that the alert uses.",
            [
                t(f"lim:http_request_errors:ratio_rate5m{{{J}}}", "5xx"),
                t(
                    f'sum(rate(http_requests_total{{{J}, status=~"4.."}}[5m])) / sum(rate(http_requests_total{{{J}}}[5m]))',
                    "4xx",
                ),
            ],
            unit="percentunit",
        ),
    )
    b.row("HTTP Latency")
    # Per-route quantiles read the recording rule of the buckets: whole job, 5-minute window.
    bucket_rule = f"lim:http_request_duration_seconds_bucket:rate5m{{{J}}}"
    for q in (0.5, 0.95, 0.99):
        b.add(
            ts(
                f"Latency p{int(q * 100)} by Path",
                f"{int(q * 100)}th percentile of HTTP response time by route over 5 minutes, all "
                "replicas (recording rule lim:http_request_duration_seconds_bucket:rate5m).",
                [t(f"histogram_quantile({q}, sum by (path, le) ({bucket_rule}))", "{{path}}")],
                unit="s",
                w=8,
            )
        )
    b.row("gRPC")
    b.add(
        ts(
            "gRPC Calls by Method and Code",
            "gRPC calls ending per second by service, method and status code.",
            [
                t(
                    f"sum by (service, method, code) (rate(grpc_requests_total{{{JI}}}[$__rate_interval]))",
                    "{{method}} {{code}}",
                )
            ],
            unit="reqps",
            w=8,
        ),
        ts(
            "gRPC Error Ratio",
            "Share of calls ending in a server-side failure (UNKNOWN, INTERNAL, UNAVAILABLE, "
            "DATA_LOSS, DEADLINE_EXCEEDED) over 5 minutes, all replicas (recording rule "
            "lim:grpc_request_errors:ratio_rate5m, the alert's number).",
            [t(f"lim:grpc_request_errors:ratio_rate5m{{{J}}}", "errors")],
            unit="percentunit",
            w=8,
        ),
        ts(
            "gRPC p95 by Method",
            "95th percentile of unary call time by method (streams, whose time is their "
            "life, are left out).",
            [
                t(
                    "histogram_quantile(0.95, sum by (method, le) (rate(grpc_request_duration_seconds_bucket"
                    f'{{{JI}, method!~"WatchIncidents|StreamEvents|Watch|ServerReflectionInfo"}}'
                    "[$__rate_interval])))",
                    "{{method}}",
                )
            ],
            unit="s",
            w=8,
        ),
    )
    b.row("Authentication")
    b.add(
        ts(
            "Auth Failures by Reason",
            "HTTP requests and gRPC calls refused for their API key, by reason (missing, "
            "invalid, revoked, forbidden, rate_limited). No series until the first refusal.",
            [t(f"sum by (reason) (rate(auth_failures_total{{{JI}}}[$__rate_interval]))", "{{reason}}")],
            unit="reqps",
            w=24,
        ),
    )
    return b.build()


# ---------------------------------------------------------------------------------------
# LLM Integration Metrics: provider requests, errors (the circuit breaker included),
# tokens, cost, latency and the answer cache.


def llm() -> model.Dashboard:
    b = Board(
        "lim-llm",
        "LLM Integration Metrics",
        "Requests to the LLM providers, their errors (circuit breaker included), tokens, "
        "cost, latency and the answer cache.",
    )
    b.row("Requests and Errors")
    b.add(
        ts(
            "Requests by Provider, Model, Operation and Status",
            "Requests to the providers per second, all replicas (recording rule "
            "lim:llm_requests:rate5m).",
            [t(f"lim:llm_requests:rate5m{{{J}}}", "{{provider}}/{{model}} {{operation}} {{status}}")],
            unit="reqps",
        ),
        ts(
            "Error Ratio by Provider and Model",
            "Share of provider requests failing over 5 minutes, all replicas (recording rule "
            "lim:llm_request_errors:ratio_rate5m, the alert's number).",
            [t(f"lim:llm_request_errors:ratio_rate5m{{{J}}}", "{{provider}}/{{model}}")],
            unit="percentunit",
        ),
    )
    b.add(
        ts(
            "Errors by Type",
            "Failures per second by type; circuit_open counts operations failed fast while "
            "the provider's circuit breaker is open (no request made).",
            [
                t(
                    f"sum by (provider, model, error_type) (rate(llm_errors_total{{{JI}}}[$__rate_interval]))",
                    "{{provider}}/{{model}} {{error_type}}",
                )
            ],
            unit="ops",
            w=24,
        ).override_by_regexp(
            ".*circuit_open.*",
            [model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})],
        ),
    )
    b.row("Tokens and Cost")
    b.add(
        ts(
            "Tokens by Type",
            "Prompt and completion tokens per second the providers reported, all replicas "
            "(recording rule lim:llm_tokens:rate5m).",
            [t(f"lim:llm_tokens:rate5m{{{J}}}", "{{provider}}/{{model}} {{token_type}}")],
            w=8,
        ),
        ts(
            "Cost Rate (USD per hour)",
            "Spend rate by provider and model, as USD per hour at the current pace.",
            [
                t(
                    f"sum by (provider, model) (rate(llm_cost_dollars_total{{{JI}}}[$__rate_interval])) * 3600",
                    "{{provider}}/{{model}}",
                )
            ],
            unit="currencyUSD",
            w=8,
        ),
        big(
            "Cost, Last Hour",
            "USD spent in the last hour, all replicas (recording rule "
            "lim:llm_cost_dollars:increase1h; the cost burn-rate alert compares it with the budget).",
            [t(f"sum(lim:llm_cost_dollars:increase1h{{{J}}})", "last hour")],
            unit="currencyUSD",
            w=4,
            h=8,
        ),
        big(
            "Cost, Time Range",
            "USD spent over the dashboard's time range.",
            [t(f"sum(increase(llm_cost_dollars_total{{{JI}}}[$__range]))", "time range")],
            unit="currencyUSD",
            w=4,
            h=8,
            instant=True,
        ).graph_mode(common.BigValueGraphMode.NONE),
    )
    b.row("Latency")
    b.add(
        ts(
            "Latency Percentiles",
            "P50, P95 and P99 of provider request time, all providers and operations.",
            quantiles(f"rate(llm_request_duration_seconds_bucket{{{JI}}}[$__rate_interval])"),
            unit="s",
        ),
        ts(
            "Latency p95 by Provider and Model",
            "95th percentile of provider request time over 5 minutes, all replicas "
            "(recording rule lim:llm_request_duration_seconds:p95_5m).",
            [t(f"lim:llm_request_duration_seconds:p95_5m{{{J}}}", "{{provider}}/{{model}}")],
            unit="s",
        ),
    )
    b.row("Answer Cache")
    b.add(
        ts(
            "Cache Hits and Misses",
            "Questions to a provider answered from the store's cache (hits), or not (misses).",
            [
                t(f"sum by (cache) (rate(cache_hits_total{{{JI}}}[$__rate_interval]))", "hits {{cache}}"),
                t(f"sum by (cache) (rate(cache_misses_total{{{JI}}}[$__rate_interval]))", "misses {{cache}}"),
            ],
            unit="ops",
        ),
        ts(
            "Cache Hit Ratio",
            "Share of questions answered from the cache over 5 minutes, all replicas "
            "(recording rule lim:cache_hit_ratio:rate5m).",
            [t(f"lim:cache_hit_ratio:rate5m{{{J}}}", "{{cache}}")],
            unit="percentunit",
        )
        .min(0)
        .max(1),
    )
    return b.build()


# ---------------------------------------------------------------------------------------
# System Health: the process, the store, the job queue, configuration reloads and the
# incident lifecycle.


def system() -> model.Dashboard:
    b = Board(
        "lim-system",
        "System Health",
        "Process resources, versions, the store's queries and connections, the job queue, "
        "configuration reloads and incident state changes.",
    )
    b.row("Process")
    b.add(
        ts(
            "CPU",
            "CPU used by each replica (user + system); 100% is one core.",
            [t(f"rate(process_cpu_seconds_total{{{JI}}}[$__rate_interval])", "{{instance}}")],
            unit="percentunit",
            w=8,
        ),
        ts(
            "Memory",
            "Resident and virtual memory of each replica.",
            [
                t(f"process_resident_memory_bytes{{{JI}}}", "resident {{instance}}"),
                t(f"process_virtual_memory_bytes{{{JI}}}", "virtual {{instance}}"),
            ],
            unit="bytes",
            w=8,
        ),
        ts(
            "Open File Descriptors vs Limit",
            "Open file descriptors of each replica, and its soft limit (right axis; absent "
            "when unlimited).",
            [
                t(f"process_open_fds{{{JI}}}", "open {{instance}}"),
                t(f"process_max_fds{{{JI}}}", "max {{instance}}"),
            ],
            w=8,
        ).override_by_regexp(
            "max .*",
            [model.DynamicConfigValue(id_val="custom.axisPlacement", value="right")],
        ),
    )
    b.add(
        ts(
            "Threads",
            "Threads of each replica.",
            [t(f"process_threads{{{JI}}}", "{{instance}}")],
            w=8,
            h=6,
        ),
        big(
            "Uptime",
            "Time since each replica started.",
            [t(f"process_uptime_seconds{{{JI}}}", "{{instance}}")],
            unit="s",
            w=4,
            h=6,
        ).graph_mode(common.BigValueGraphMode.NONE),
        big(
            "Restarts (time range)",
            "Restarts of each replica in the time range (its start time changed).",
            [t(f"changes(process_start_time_seconds{{{JI}}}[$__range])", "{{instance}}")],
            w=4,
            h=6,
            instant=True,
        )
        .graph_mode(common.BigValueGraphMode.NONE)
        .thresholds(thresholds((None, "green"), (1, "orange"))),
        setup(
            table.Panel(),
            "Build",
            "Version and store backend of each replica (build_info).",
            [t(f"max by (instance, version, backend) (build_info{{{JI}}})")],
            w=8,
            h=6,
            instant=True,
            fmt=PromQueryFormat.TABLE,
        ).with_transformation(
            model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True, "Value": True}}
            )
        ),
    )
    b.row("Database")
    b.add(
        ts(
            "Query p95 by Operation",
            "95th percentile of store operation time by operation (the job queue's included).",
            [
                t(
                    "histogram_quantile(0.95, sum by (operation, le) "
                    f"(rate(database_query_duration_seconds_bucket{{{JI}}}[$__rate_interval])))",
                    "{{operation}}",
                )
            ],
            unit="s",
        ),
        ts(
            "Connections",
            "Each replica's pool: connections in use, idle, and the maximum (SQLite: the "
            "readers plus the writer, which always counts as in use).",
            [
                t(f"database_connections_in_use{{{JI}}}", "in use {{instance}}"),
                t(f"database_connections_idle{{{JI}}}", "idle {{instance}}"),
                t(f"database_connections_max{{{JI}}}", "max {{instance}}"),
            ],
        ),
    )
    b.row("Jobs")
    b.add(
        ts(
            "Job Queue Depth",
            "Jobs waiting, due now or later, by type, as the store counts them (max across "
            "replicas: recording rule lim:job_queue_depth:max).",
            [t(f"lim:job_queue_depth:max{{{J}}}", "{{job_type}}")],
        ),
        ts(
            "Jobs in Progress",
            "Attempts running now, by type, summed over the chosen replicas.",
            [t(f"sum by (job_type) (jobs_in_progress{{{JI}}})", "{{job_type}}")],
        ),
    )
    b.row("Configuration and Incidents")
    b.add(
        big(
            "Config Reload Status",
            "Whether the last configuration load or reload of each replica worked; a refused "
            "reload leaves the previous configuration running.",
            [t(f"config_last_reload_successful{{{JI}}}", "{{instance}}")],
            w=6,
            h=6,
        )
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="refused", color="red", index=0),
                        "1": model.ValueMappingResult(text="OK", color="green", index=1),
                    }
                )
            ]
        ),
        big(
            "Last Successful Config Load",
            "When each replica last loaded its configuration successfully.",
            [t(f"config_last_reload_success_timestamp_seconds{{{JI}}} * 1000", "{{instance}}")],
            unit="dateTimeFromNow",
            w=6,
            h=6,
        ).graph_mode(common.BigValueGraphMode.NONE),
        bars(
            "Incident State Transitions (time range)",
            "Accepted incident state changes in the time range (a refused transition counts "
            "nothing).",
            [
                t(
                    "sum by (from_state, to_state) "
                    f"(increase(incident_state_transitions_total{{{JI}}}[$__range]))",
                    "{{from_state}} → {{to_state}}",
                )
            ],
            w=12,
            h=6,
        ),
    )
    return b.build()


DASHBOARDS: dict[str, typing.Callable[[], model.Dashboard]] = {
    "overview.json": overview,
    "http.json": http,
    "llm.json": llm,
    "system.json": system,
}


def render(board: model.Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=pathlib.Path, default=here / "dashboards", help="directory to write to")
    args = parser.parse_args()
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / name).write_text(render(build()), encoding="utf-8")
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
