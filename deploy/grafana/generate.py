#!/usr/bin/env python3
"""Writes Grafana's dashboards in dashboards/: "Model monitoring" (model-monitoring.json) and
"weir: pipeline health" (weir.json). Run it after changing a panel:
python3 deploy/grafana/generate.py
The tests check every PromQL expression with promtool and every metric named against a
running model-monitoring pipeline (tests/it/dashboards.rs).
"""
import json, os, sys
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}

def var(name, label, query, ds=PROM):
    return {"name": name, "label": label, "type": "query", "datasource": ds,
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1}

class Board:
    def __init__(self):
        self.panels = []; self.y = 0; self.x = 0; self.id = 0
    def row(self, title):
        if self.x: self.y += 8; self.x = 0
        self.id += 1
        self.panels.append({"id": self.id, "type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1
    def panel(self, title, kind, targets, w=12, h=8, unit=None, desc=None, ds=PROM, extra=None):
        if self.x + w > 24: self.y += h; self.x = 0
        self.id += 1
        p = {"id": self.id, "type": kind, "title": title, "datasource": ds,
             "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y}, "targets": []}
        if desc: p["description"] = desc
        for i, t in enumerate(targets):
            expr, legend = t if isinstance(t, tuple) else (t, None)
            tgt = {"refId": chr(65 + i), "datasource": ds, "expr": expr}
            if legend: tgt["legendFormat"] = legend
            if ds is LOKI: tgt["queryType"] = "range"
            p["targets"].append(tgt)
        fc = {"defaults": {}, "overrides": []}
        if unit: fc["defaults"]["unit"] = unit
        if kind != "logs": p["fieldConfig"] = fc
        if extra: p.update(extra)
        self.panels.append(p)
        self.x += w
        if self.x >= 24: self.x = 0; self.y += h
    def dash(self, uid, title, variables, desc):
        return {"uid": uid, "title": title, "description": desc, "tags": ["weir"], "editable": True,
                "schemaVersion": 39, "version": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
                "timezone": "browser", "graphTooltip": 1,
                "templating": {"list": variables}, "annotations": {"list": []},
                "links": [{"title": "weir dashboards", "type": "dashboards", "tags": ["weir"], "asDropdown": True}],
                "panels": self.panels}

# ---- model monitoring
sel = 'instance=~"$instance", model=~"$model", version=~"$version"'
b = Board()
b.row("Traffic and errors")
b.panel("Requests per second", "timeseries",
        [(f'sum by (model, version) (rate(weir_model_requests_total{{{sel}}}[$__rate_interval]))', "{{model}} v{{version}}")],
        w=8, unit="reqps", desc="Inference requests seen in the model servers' logs (weir_model_requests_total).")
b.panel("Error rate", "timeseries",
        [(f'sum by (model, version) (rate(weir_model_errors_total{{{sel}}}[$__rate_interval])) / sum by (model, version) (rate(weir_model_requests_total{{{sel}}}[$__rate_interval]))', "{{model}} v{{version}}")],
        w=8, unit="percentunit", desc="Failed requests (event.outcome = failure) over all requests.")
b.panel("Requests by status class", "timeseries",
        [(f'sum by (status_class) (rate(weir_model_requests_total{{{sel}}}[$__rate_interval]))', "{{status_class}}")],
        w=8, unit="reqps", extra={"options": {"legend": {"displayMode": "list", "placement": "bottom"}}})
b.row("Latency and throughput")
lat = lambda q: (f'histogram_quantile({q}, sum by (le, model, version) (rate(weir_model_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))', f"p{int(q*100)} {{{{model}}}} v{{{{version}}}}")
b.panel("Latency p50, p95, p99", "timeseries", [lat(0.5), lat(0.95), lat(0.99)], w=12, unit="s",
        desc="Quantiles of weir_model_request_duration_seconds, from the latency each log line reports.")
b.panel("Tokens per second", "timeseries",
        [(f'sum by (model, version, kind) (rate(weir_model_tokens_total{{{sel}}}[$__rate_interval]))', "{{model}} v{{version}} {{kind}}")],
        w=12, unit="short", desc="Prompt and completion tokens LLM servers processed (weir_model_tokens_total by kind).")
b.row("Drift against the training data")
b.panel("Drift score per feature", "timeseries",
        [(f'max by (model, version, feature, method) (weir_feature_drift_score{{{sel}}})', "{{model}} v{{version}} {{feature}} ({{method}})")],
        w=12, desc="Score of each feature's last window against the reference profile; its meaning follows the method (distance, or p-value).")
b.panel("Features drifted", "state-timeline",
        [(f'max by (model, version, feature) (weir_feature_drift_detected{{{sel}}})', "{{model}} v{{version}} {{feature}}")],
        w=12, extra={"fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {"0": {"text": "no drift", "color": "green"}, "1": {"text": "drift", "color": "red"}}}], "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}}, "overrides": []}})
b.panel("Dataset drift detected", "stat",
        [(f'max by (model, version) (weir_dataset_drift_detected{{{sel}}})', "{{model}} v{{version}}")],
        w=8, extra={"fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {"0": {"text": "no", "color": "green"}, "1": {"text": "DRIFT", "color": "red"}}}]}, "overrides": []}})
b.panel("Share of features drifted", "timeseries",
        [(f'max by (model, version) (weir_dataset_drift_share{{{sel}}})', "{{model}} v{{version}}")], w=16, unit="percentunit")
b.row("Quality from delayed labels")
b.panel("Accuracy", "timeseries",
        [(f'max by (model, version) (weir_model_accuracy{{{sel}}})', "{{model}} v{{version}}")], w=12, unit="percentunit",
        desc="Share of labelled predictions that were right in the last window (the accuracy transform).")
b.panel("Label coverage", "timeseries",
        [(f'max by (model, version) (weir_model_label_coverage_ratio{{{sel}}})', "{{model}} v{{version}}")], w=12, unit="percentunit")
b.row("Logs")
b.panel("Errors of the selected models (Loki)", "logs",
        ['{job="model-serving", model=~"$model", version=~"$version"} | json | event_outcome = "failure"'],
        w=24, h=10, ds=LOKI, extra={"options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending"}})
variables = [
    var("instance", "weir instance", "label_values(weir_model_requests_total, instance)"),
    var("model", "model", 'label_values(weir_model_requests_total{instance=~"$instance"}, model)'),
    var("version", "version", 'label_values(weir_model_requests_total{instance=~"$instance", model=~"$model"}, version)'),
]
json.dump(b.dash("weir-model-monitoring", "Model monitoring",
                 variables, "Model servers' traffic, latency, errors, drift and accuracy, from the metrics weir derives from their logs, and their error logs."),
          open(os.path.join(OUT, "model-monitoring.json"), "w"), indent=2)

# ---- weir's own pipeline health
s = 'instance=~"$instance", component_id=~"$component"'
b = Board()
b.row("Events")
b.panel("Events in per component", "timeseries",
        [(f'sum by (component_kind, component_id) (rate(weir_component_received_events_total{{{s}}}[$__rate_interval]))', "{{component_kind}} {{component_id}}")], unit="short")
b.panel("Events out per component", "timeseries",
        [(f'sum by (component_kind, component_id, output) (rate(weir_component_sent_events_total{{{s}}}[$__rate_interval]))', "{{component_kind}} {{component_id}} {{output}}")], unit="short")
b.panel("Errors by type", "timeseries",
        [(f'sum by (component_id, error_type) (rate(weir_component_errors_total{{{s}}}[$__rate_interval]))', "{{component_id}} {{error_type}}")], w=8)
b.panel("Events discarded by reason", "timeseries",
        [(f'sum by (component_id, reason) (rate(weir_component_discarded_events_total{{{s}}}[$__rate_interval]))', "{{component_id}} {{reason}}")], w=8,
        desc="Filtered and sampled events, and drops at full buffers (when_full = drop_newest).")
b.panel("Components unhealthy", "stat",
        [(f'count(weir_component_healthy{{{s}}} == 0) or vector(0)', None)], w=8,
        extra={"fieldConfig": {"defaults": {"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}}, "overrides": []}})
b.row("Sinks and buffers")
b.panel("Buffer fill", "timeseries",
        [(f'max by (component_id) (weir_buffer_size_bytes{{{s}}} / weir_buffer_max_size_bytes{{{s}}})', "{{component_id}}")], w=8, unit="percentunit",
        desc="Near 1, backpressure is holding the sources.")
b.panel("Retries", "timeseries",
        [(f'sum by (component_id) (rate(weir_sink_retries_total{{{s}}}[$__rate_interval]))', "{{component_id}}")], w=8, unit="short")
b.panel("Requests by status", "timeseries",
        [(f'sum by (component_id, status) (rate(weir_sink_requests_total{{{s}}}[$__rate_interval]))', "{{component_id}} {{status}}")], w=8, unit="reqps")
b.panel("Events refused for good (rejections), by reason", "timeseries",
        [(f'sum by (component_id, reason) (rate(weir_sink_rejected_events_total{{{s}}}[$__rate_interval]))', "{{component_id}} {{reason}}")], w=8)
b.panel("Dead letters by reason", "timeseries",
        [(f'sum by (component_id, reason) (increase(weir_dead_letter_events_total{{{s}}}[$__rate_interval]))', "{{component_id}} {{reason}}")], w=8)
b.panel("Sink request latency p95", "timeseries",
        [(f'histogram_quantile(0.95, sum by (le, component_id) (rate(weir_sink_request_duration_seconds_bucket{{{s}}}[$__rate_interval])))', "{{component_id}}")], w=8, unit="s")
b.row("Process and configuration")
b.panel("Configuration reloads", "timeseries", [('sum by (instance, result) (increase(weir_config_reloads_total{instance=~"$instance"}[$__rate_interval]))', "{{instance}} {{result}}")], w=6, unit="short",
        desc="SIGHUP, --watch-config and POST /reload; failed: the new configuration was invalid or refused and the old one runs on.")

b.panel("CPU", "timeseries", [('rate(process_cpu_seconds_total{job="weir", instance=~"$instance"}[$__rate_interval])', "{{instance}}")], w=6, unit="percentunit")
b.panel("Resident memory", "timeseries", [('process_resident_memory_bytes{job="weir", instance=~"$instance"}', "{{instance}}")], w=6, unit="bytes")
b.panel("Open file descriptors", "timeseries", [('process_open_fds{job="weir", instance=~"$instance"} / process_max_fds{job="weir", instance=~"$instance"}', "{{instance}}")], w=6, unit="percentunit")
b.row("System logs")
b.panel("System logs (Loki)", "logs", ['{job="syslog"}'], w=24, h=10, ds=LOKI, extra={"options": {"showTime": True}})
variables = [
    var("instance", "weir instance", "label_values(weir_build_info, instance)"),
    var("component", "component", 'label_values(weir_component_received_events_total{instance=~"$instance"}, component_id)'),
]
json.dump(b.dash("weir-overview", "weir: pipeline health", variables,
                 "weir's own delivery: events in and out, buffers, retries, rejections, dead letters, the process."),
          open(os.path.join(OUT, "weir.json"), "w"), indent=2)
