#!/usr/bin/env python3
"""Writes weir-dashboards.ndjson: the Kibana saved objects `weir setup` imports (and users
import by hand, Stack Management > Saved objects > Import): Lens visualizations, saved
searches and three dashboards over the data view `weir-logs`.

Run it after changing an object: python3 deploy/kibana/generate.py
The objects carry migration versions of Kibana 8.9 (Lens's `formBased` layers), so Kibana
8.9 or later (and 9.x) imports them and migrates them onward.
"""
import hashlib
import json
import os

VIEW = "weir-logs"
LENS_VERSION = {"coreMigrationVersion": "8.8.0", "typeMigrationVersion": "8.9.0"}
MARKER = "weir-objects:"


def col_date():
    return {"label": "@timestamp", "dataType": "date", "operationType": "date_histogram",
            "sourceField": "@timestamp", "isBucketed": True, "scale": "interval",
            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}


def col_count(label):
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": "count",
            "sourceField": "___records___", "isBucketed": False, "scale": "ratio",
            "params": {"emptyAsNull": True}}


def col_metric(op, field, label, **params):
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": op,
            "sourceField": field, "isBucketed": False, "scale": "ratio", "params": params}


def col_terms(field, label, order_by, size=10, secondary=None):
    params = {"size": size, "orderBy": {"type": "column", "columnId": order_by},
              "orderDirection": "desc", "otherBucket": True, "missingBucket": False}
    if secondary:
        params["secondaryFields"] = secondary
    return {"label": label, "customLabel": True, "dataType": "string", "operationType": "terms",
            "sourceField": field, "isBucketed": True, "scale": "ordinal", "params": params}


def col_filters(label, filters):
    return {"label": label, "customLabel": True, "dataType": "string", "operationType": "filters",
            "isBucketed": True, "scale": "ordinal",
            "params": {"filters": [{"label": l, "input": {"query": q, "language": "kuery"}} for l, q in filters]}}


def lens(oid, title, description, query, columns, vis_type, visualization):
    layer = "layer1"
    order = list(columns)
    state = {
        "datasourceStates": {"formBased": {"layers": {layer: {
            "columns": columns, "columnOrder": order, "incompleteColumns": {}}}}},
        "visualization": visualization(layer),
        "query": {"query": query, "language": "kuery"},
        "filters": [],
    }
    return {"id": oid, "type": "lens", **LENS_VERSION,
            "attributes": {"title": title, "description": description,
                           "visualizationType": vis_type, "state": state},
            "references": [{"type": "index-pattern", "id": VIEW, "name": f"indexpattern-datasource-layer-{layer}"}]}


def xy(series, x, ys, split=None):
    def build(layer):
        l = {"layerId": layer, "layerType": "data", "seriesType": series, "xAccessor": x, "accessors": ys}
        if split:
            l["splitAccessor"] = split
        return {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
                "preferredSeriesType": series, "fittingFunction": "None", "layers": [l]}
    return build


def table(cols):
    return lambda layer: {"layerId": layer, "layerType": "data", "columns": [{"columnId": c} for c in cols]}


def search(oid, title, description, query, columns):
    source = {"query": {"query": query, "language": "kuery"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return {"id": oid, "type": "search", "coreMigrationVersion": "8.8.0", "typeMigrationVersion": "8.0.0",
            "attributes": {"title": title, "description": description, "columns": columns,
                           "sort": [["@timestamp", "desc"]],
                           "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)}},
            "references": [{"type": "index-pattern", "id": VIEW, "name": "kibanaSavedObjectMeta.searchSourceJSON.index"}]}


def dashboard(oid, title, description, panels):
    pj, refs = [], []
    for i, (obj, x, y, w, h) in enumerate(panels):
        pj.append({"version": "8.9.0", "type": obj["type"], "panelIndex": str(i + 1),
                   "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(i + 1)},
                   "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{i}"})
        refs.append({"name": f"panel_{i}", "type": obj["type"], "id": obj["id"]})
    return {"id": oid, "type": "dashboard", **LENS_VERSION,
            "attributes": {"title": title, "description": description,
                           "panelsJSON": json.dumps(pj), "timeRestore": False,
                           "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "hidePanelTitles": False}),
                           "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})}},
            "references": refs}


ERRORS = "event.outcome:failure or http.response.status_code >= 500 or log.level:(ERROR or CRITICAL or error or critical)"
REQUESTS = "model.name:* and not event.action:(drift_window or quality_window)"

requests = lens("weir-lens-requests", "Requests per model and version", "Inference events by model name and version.",
                REQUESTS, {"x": col_date(), "y": col_count("Requests"),
                           "model": col_terms("model.name", "Model and version", "y", secondary=["model.version"])},
                "lnsXY", xy("bar_stacked", "x", ["y"], "model"))
latency = lens("weir-lens-latency", "Latency percentiles", "p50, p95 and p99 of ECS event.duration (nanoseconds; the data view shows milliseconds).",
               "event.duration:*", {"x": col_date(),
                                    "p50": col_metric("percentile", "event.duration", "p50", percentile=50),
                                    "p95": col_metric("percentile", "event.duration", "p95", percentile=95),
                                    "p99": col_metric("percentile", "event.duration", "p99", percentile=99)},
               "lnsXY", xy("line", "x", ["p50", "p95", "p99"]))
error_rate = lens("weir-lens-error-rate", "Error rate", "Share of requests and log lines that failed.",
                  REQUESTS + " or log.level:*", {"x": col_date(), "y": col_count("Events"),
                                                 "outcome": col_filters("Outcome", [("failed", ERRORS), ("succeeded", f"not ({ERRORS})")])},
                  "lnsXY", xy("bar_percentage_stacked", "x", ["y"], "outcome"))
status = lens("weir-lens-status-codes", "HTTP status codes", "Responses by status code.",
              "http.response.status_code:*", {"x": col_date(), "y": col_count("Responses"),
                                              "status": col_terms("http.response.status_code", "Status", "y")},
              "lnsXY", xy("bar_stacked", "x", ["y"], "status"))
top_errors = lens("weir-lens-top-errors", "Top error messages", "The most frequent error messages.",
                  "error.message:*", {"message": col_terms("error.message.keyword", "Error message", "count", size=20),
                                      "count": col_count("Count")},
                  "lnsDatatable", table(["message", "count"]))
error_log = search("weir-search-errors", "Model serving errors", "Failed requests and error lines.",
                   ERRORS, ["log.level", "model.name", "model.version", "error.type", "error.message", "log.logger", "host.name", "log.file.path"])

drifted = lens("weir-lens-drift-features", "Features drifted per window", "drift.dataset.features_drifted of each drift report, by model.",
               "event.action:drift_window", {"x": col_date(), "y": col_metric("max", "drift.dataset.features_drifted", "Features drifted"),
                                             "model": col_terms("model.name", "Model and version", "y", secondary=["model.version"])},
               "lnsXY", xy("bar", "x", ["y"], "model"))
share = lens("weir-lens-drift-share", "Share of features drifted", "drift.dataset.share of each drift report, by model.",
             "event.action:drift_window", {"x": col_date(), "y": col_metric("max", "drift.dataset.share", "Share drifted"),
                                           "model": col_terms("model.name", "Model and version", "y", secondary=["model.version"])},
             "lnsXY", xy("line", "x", ["y"], "model"))
feature_scores = lens("weir-lens-drift-feature-scores", "Drift score per feature",
                      "drift.feature.score of each feature and window, by feature and model (the drift transform's feature_events; "
                      "each method's threshold is in the drift reports).",
                      "event.action:drift_feature and drift.feature.tested:true",
                      {"x": col_date(), "y": col_metric("max", "drift.feature.score", "Drift score"),
                       "feature": col_terms("drift.feature.name", "Feature and model", "y", size=20, secondary=["model.name"])},
                      "lnsXY", xy("line", "x", ["y"], "feature"))
drift_log = search("weir-search-drift", "Drift reports", "Each window's verdict; open a report for every feature's score, method and p-value (drift.features.<name>.*).",
                   "event.action:drift_window", ["model.name", "model.version", "drift.dataset.drifted", "drift.dataset.features_drifted",
                                                 "drift.dataset.features_tested", "drift.dataset.share", "drift.window.events"])

dl_reason = lens("weir-lens-dead-letters", "Dead letters by reason", "Events a sink rejected for good, by the destination's reason (error.type).",
                 "weir.dead_letter.sink:*", {"x": col_date(), "y": col_count("Dead letters"),
                                             "reason": col_terms("error.type", "Reason", "y")},
                 "lnsXY", xy("bar_stacked", "x", ["y"], "reason"))
dl_sink = lens("weir-lens-dead-letter-sinks", "Dead letters by sink", "Rejected events per weir sink.",
               "weir.dead_letter.sink:*", {"sink": col_terms("weir.dead_letter.sink", "Sink", "count"),
                                           "count": col_count("Dead letters")},
               "lnsDatatable", table(["sink", "count"]))
dl_log = search("weir-search-dead-letters", "Dead letters", "What each sink rejected, why, and the original event (event.original).",
                "weir.dead_letter.sink:*", ["weir.dead_letter.sink", "weir.dead_letter.sink_type", "weir.dead_letter.destination", "error.type", "error.message"])

serving = dashboard("weir-model-serving", "Model serving",
                    "Requests per model and version, latency percentiles, error rate, status codes, top errors and the error log.",
                    [(requests, 0, 0, 24, 12), (latency, 24, 0, 24, 12), (error_rate, 0, 12, 24, 12),
                     (status, 24, 12, 24, 12), (top_errors, 0, 24, 16, 15), (error_log, 16, 24, 32, 15)])
drift = dashboard("weir-model-drift", "Model drift",
                  "Drift against the training data, from weir's drift reports (event.action: drift_window).",
                  [(drifted, 0, 0, 24, 12), (share, 24, 0, 24, 12), (feature_scores, 0, 12, 48, 14),
                   (drift_log, 0, 26, 48, 15)])
delivery = dashboard("weir-delivery", "weir delivery",
                     "Dead letters by reason and sink. Events in and out per component are on Grafana's weir dashboard (Prometheus).",
                     [(dl_reason, 0, 0, 32, 12), (dl_sink, 32, 0, 16, 12), (dl_log, 0, 12, 48, 15)])

view = {"id": VIEW, "type": "index-pattern", "coreMigrationVersion": "8.8.0", "typeMigrationVersion": "8.0.0",
        "attributes": {"title": "logs-model_serving-*", "name": "weir: model serving", "timeFieldName": "@timestamp",
                       "fieldFormatMap": json.dumps({"event.duration": {"id": "duration", "params": {
                           "inputFormat": "nanoseconds", "outputFormat": "asMilliseconds", "outputPrecision": 1}}})},
        "references": []}

objects = [view, requests, latency, error_rate, status, top_errors, error_log, drifted, share, feature_scores, drift_log,
           dl_reason, dl_sink, dl_log, serving, drift, delivery]
# A hash of the content marks each dashboard, so that `weir setup` sees whether Kibana has
# these objects already (and says "unchanged") without comparing what Kibana migrated.
body = "\n".join(json.dumps(o, sort_keys=True) for o in objects)
digest = hashlib.sha1(body.encode()).hexdigest()[:16]
for o in objects:
    if o["type"] == "dashboard":
        o["attributes"]["description"] += f" ({MARKER}{digest})"
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weir-dashboards.ndjson")
with open(out, "w") as f:
    for o in objects:
        f.write(json.dumps(o, sort_keys=True) + "\n")
print(f"{len(objects)} objects, {MARKER}{digest} -> {out}")
