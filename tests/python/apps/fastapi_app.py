"""A small FastAPI model server, run by uvicorn in weir's tests with its default logging."""

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI()


class Features(BaseModel):
    tenure_months: float
    monthly_charges: float


@app.get("/health")
def health():
    return {"status": "ok"}


@app.post("/predict")
def predict(features: Features, fail: bool = False):
    if fail:
        raise ValueError("model returned NaN for tenure_months=%s" % features.tenure_months)
    if features.monthly_charges < 0:
        raise HTTPException(status_code=400, detail="monthly_charges must be positive")
    return {"prediction": "churn" if features.tenure_months < 12 else "stay"}
