//! Model monitoring shared by the `drift` and `accuracy` transforms, the alerting and MLflow
//! sinks and `weir profile`: the drift statistics ([`stats`]), reference profiles of training
//! data ([`profile`]), the gauges they export ([`gauges`]) and the reports the transforms emit
//! and the sinks read ([`report`]).
//!
//! Invariant: every series exported here is labelled only by model, version, feature (taken
//! from a reference profile, so bounded) and method; never by anything per request.

pub mod gauges;
pub mod profile;
pub mod report;
pub mod stats;
