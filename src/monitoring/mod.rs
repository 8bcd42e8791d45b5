//! Model monitoring shared by the `drift` and `accuracy` transforms and `weir profile`: the
//! drift statistics ([`stats`]), reference profiles of training data ([`profile`]) and the
//! gauges they export ([`gauges`]).
//!
//! Invariant: every series exported here is labelled only by model, version, feature (taken
//! from a reference profile, so bounded) and method; never by anything per request.

pub mod gauges;
pub mod profile;
pub mod stats;
