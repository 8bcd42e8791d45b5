//! Compiling and running VRL (Vector Remap Language, the `vrl` crate) on events.
//!
//! weir does not have an expression language of its own: conditions (`filter`, `route`) and
//! free-form edits (`remap`) are VRL programs, compiled once when the pipeline is built, with
//! VRL's standard library minus the functions that reach the network, read the environment at
//! run time or do cryptography (the crate's `stdlib-base` feature).

use std::sync::{Arc, OnceLock};

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::RuntimeState;
use vrl::compiler::{CompileConfig, Function, Program, TargetValueRef, TimeZone, TypeState};
use vrl::diagnostic::Formatter;
use vrl::value::{Secrets, Value};

use crate::event::Event;

fn functions() -> &'static [Box<dyn Function>] {
    static FNS: OnceLock<Vec<Box<dyn Function>>> = OnceLock::new();
    FNS.get_or_init(vrl::stdlib::all)
}

/// A compiled program, shareable between threads.
#[derive(Clone)]
pub struct VrlProgram {
    program: Arc<Program>,
    source: Arc<str>,
}

impl std::fmt::Debug for VrlProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VrlProgram({:?})", self.source)
    }
}

impl VrlProgram {
    /// Compiles `source`. `read_only` forbids assignments (conditions must not edit events).
    /// The error is VRL's own diagnostic, which points into `source`.
    pub fn compile(source: &str, read_only: bool) -> Result<Self, String> {
        let mut config = CompileConfig::default();
        if read_only {
            config.set_read_only();
        }
        let state = TypeState::default();
        match vrl::compiler::compile_with_state(source, functions(), &state, config) {
            Ok(result) => Ok(Self { program: Arc::new(result.program), source: Arc::from(source) }),
            Err(diagnostics) => {
                let text = Formatter::new(source, diagnostics).to_string();
                Err(format!("VRL program does not compile:\n{}", text.trim_end()))
            }
        }
    }
}

/// A program plus the state needed to run it; one per transform task.
pub struct VrlRunner {
    program: VrlProgram,
    runtime: Runtime,
    timezone: TimeZone,
    metadata: Value,
    secrets: Secrets,
}

/// Why a program did not complete.
#[derive(Debug)]
pub enum VrlFailure {
    /// `abort` was called.
    Aborted(String),
    /// A runtime error (a fallible function failed, a type mismatch).
    Error(String),
}

impl std::fmt::Display for VrlFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aborted(m) => write!(f, "aborted: {m}"),
            Self::Error(m) => f.write_str(m),
        }
    }
}

impl VrlRunner {
    pub fn new(program: VrlProgram) -> Self {
        Self {
            program,
            runtime: Runtime::new(RuntimeState::default()),
            timezone: TimeZone::default(),
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        }
    }

    /// Runs the program on the event's fields in place and returns the program's value.
    pub fn run(&mut self, event: &mut Event) -> Result<Value, VrlFailure> {
        let mut target = TargetValueRef {
            value: event.fields_mut(),
            metadata: &mut self.metadata,
            secrets: &mut self.secrets,
        };
        let result = self.runtime.resolve(&mut target, &self.program.program, &self.timezone);
        self.runtime.clear();
        // A program may have replaced the root with a non-object; keep the event's invariant.
        if !matches!(event.fields(), Value::Object(_)) {
            let v = std::mem::replace(event.fields_mut(), Value::Null);
            event.set_fields(v);
        }
        result.map_err(|t| match t {
            Terminate::Abort(e) => VrlFailure::Aborted(e.to_string()),
            Terminate::Error(e) => VrlFailure::Error(e.to_string()),
            other => VrlFailure::Error(other.to_string()),
        })
    }

    /// Runs a condition: true only for a boolean `true` result. A failing condition is false.
    pub fn check(&mut self, event: &mut Event) -> Result<bool, VrlFailure> {
        match self.run(event)? {
            Value::Boolean(b) => Ok(b),
            other => Err(VrlFailure::Error(format!(
                "condition returned {} instead of a boolean",
                other.kind_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_and_edit() {
        let cond = VrlProgram::compile(
            r#"(int(.status) ?? 0) >= 500 && contains(string(.path) ?? "", "/predictions")"#,
            true,
        )
        .unwrap();
        let mut r = VrlRunner::new(cond);
        let mut e = Event::from_value(vrl::value!({"status": 503, "path": "/predictions/resnet"}));
        assert!(r.check(&mut e).unwrap());
        let mut e = Event::from_value(vrl::value!({"status": 200, "path": "/predictions/resnet"}));
        assert!(!r.check(&mut e).unwrap());

        let edit =
            VrlProgram::compile(".service.name = \"torchserve\"\ndel(.path)", false).unwrap();
        let mut r = VrlRunner::new(edit);
        r.run(&mut e).unwrap();
        assert_eq!(
            serde_json::to_string(&e.view()).unwrap(),
            r#"{"service":{"name":"torchserve"},"status":200}"#
        );
    }

    #[test]
    fn read_only_conditions_reject_assignment() {
        let err = VrlProgram::compile(".x = 1\ntrue", true).unwrap_err();
        assert!(err.contains("read-only") || err.contains("read only"), "{err}");
    }

    #[test]
    fn compile_errors_point_into_the_program() {
        let err = VrlProgram::compile(".status >=", true).unwrap_err();
        assert!(err.starts_with("VRL program does not compile"), "{err}");
    }
}
