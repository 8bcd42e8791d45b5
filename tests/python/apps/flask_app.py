"""A small Flask model server, run by werkzeug's development server and by gunicorn in
weir's tests, with their default logging."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.post("/predict")
def predict():
    body = request.get_json(silent=True)
    if body is None or "tenure_months" not in body:
        return jsonify(error="tenure_months is required"), 400
    if request.args.get("fail"):
        raise ValueError("model returned NaN for tenure_months=%s" % body["tenure_months"])
    return jsonify(prediction="churn" if body["tenure_months"] < 12 else "stay")


if __name__ == "__main__":
    import sys

    app.run(host="127.0.0.1", port=int(sys.argv[1]))
