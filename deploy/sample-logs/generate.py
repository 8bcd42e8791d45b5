"""Writes the sample logs of the model-monitoring pipeline (deterministic, seed 28):
predictions.jsonl (JSON prediction logs of churn-xgb v3, whose inputs drift in the second
half, with some failed predictions, and of an LLM with token counts), labels.jsonl (delayed
ground truth for most predictions), access_log.log (TorchServe access lines), and
training.csv, the training data of the profile in deploy/profiles/:

    python3 deploy/sample-logs/generate.py          # in deploy/sample-logs/
    weir profile --input training.csv --features tenure_months,monthly_charges,contract \
        --model churn-xgb --model-version 3 --out ../profiles/churn-xgb-3.profile.json

torchserve.log and syslog are written by hand (TorchServe's and rsyslog's formats).
"""
import json, random, datetime
random.seed(28)
t0 = datetime.datetime(2026, 11, 27, 10, 0, 0, tzinfo=datetime.timezone.utc)
contracts = ["month-to-month", "one-year", "two-year"]
# training data
with open("training.csv", "w") as f:
    f.write("tenure_months,monthly_charges,contract\n")
    for i in range(2000):
        f.write(f"{random.gauss(30,12):.1f},{random.gauss(65,20):.2f},{random.choices(contracts,[0.5,0.3,0.2])[0]}\n")
preds = []
access = []
labels = []
for i in range(300):
    ts = t0 + datetime.timedelta(milliseconds=250 * i)
    rid = f"{0x5e00 + i:016x}"
    # the second half drifts: longer tenure, higher charges
    shift = i >= 150
    tenure = random.gauss(48 if shift else 30, 12)
    charges = random.gauss(95 if shift else 65, 20)
    contract = random.choices(contracts, [0.2, 0.3, 0.5] if shift else [0.5, 0.3, 0.2])[0]
    score = random.random()
    pred = "churn" if score > 0.6 else "stay"
    rec = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond//1000:03d}Z",
           "level": "INFO", "logger": "model_server.predict", "model": "churn-xgb", "model_version": "3",
           "request_id": rid, "latency_ms": round(random.lognormvariate(2.5, 0.4), 2),
           "features": {"tenure_months": round(tenure, 1), "monthly_charges": round(charges, 2), "contract": contract},
           "prediction": pred, "score": round(score, 4)}
    if i % 37 == 36:
        rec = {"timestamp": rec["timestamp"], "level": "ERROR", "logger": "model_server.predict",
               "model": "churn-xgb", "model_version": "3", "request_id": rid, "latency_ms": 3.1,
               "error": "ValueError: feature monthly_charges is NaN", "message": "prediction failed"}
    preds.append(json.dumps(rec, separators=(",", ":")))
    if i < 200 and "prediction" in rec:
        truth = pred if random.random() < 0.8 else ("stay" if pred == "churn" else "churn")
        labels.append(json.dumps({"request_id": rid, "label": truth}, separators=(",", ":")))
for i in range(40):
    ts = t0 + datetime.timedelta(milliseconds=250 * i + 100)
    status = 500 if i % 13 == 12 else 200
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S,") + f"{ts.microsecond//1000:03d}"
    access.append(f'{stamp} [INFO ] W-9000-churn-xgb_3 ACCESS_LOG - /10.0.0.{12 + i % 5}:{51000 + i} "POST /predictions/churn-xgb HTTP/1.1" {status} {random.randint(5, 60)}')
# an LLM behind the same pipeline: tokens
for i in range(30):
    ts = t0 + datetime.timedelta(milliseconds=500 * i + 50)
    rec = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond//1000:03d}Z", "level": "INFO",
           "logger": "llm.generate", "model": "support-llm", "model_version": "1", "request_id": f"llm-{i:04d}",
           "latency_ms": round(random.uniform(300, 1500), 1),
           "usage": {"prompt_tokens": random.randint(20, 400), "completion_tokens": random.randint(10, 300)}}
    preds.append(json.dumps(rec, separators=(",", ":")))
open("predictions.jsonl", "w").write("\n".join(preds) + "\n")
open("labels.jsonl", "w").write("\n".join(labels) + "\n")
open("access_log.log", "w").write("\n".join(access) + "\n")
