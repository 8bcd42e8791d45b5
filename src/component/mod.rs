//! What a component is: one trait per kind ([`SourceComponent`], [`TransformComponent`],
//! [`SinkComponent`]), implemented by the component's config struct, and what it is given when
//! it is built ([`context`]).
//!
//! A source or sink goes through two steps. `check` is pure: it validates the config and
//! compiles what it can (patterns, templates, addresses) into the component's `Checked` form,
//! reporting every problem at once. `build` takes that form and does the I/O (opens files,
//! binds sockets, creates clients), then returns the component's [`Task`]. So a pattern is
//! parsed in one place, and what `weir validate` accepts is what `weir run` builds. A
//! transform has no I/O: its `build` is its check (run against the real metrics, or throw-away
//! ones when validating).
//!
//! Capabilities are methods with defaults (a source that waits for acknowledgements, a sink
//! that writes blocks of lines as read); the topology asks them, never the concrete type.
//! The closed enums of [`crate::component_enum!`] dispatch to these traits, so adding a
//! component is its module and one line in its kind's enum.
//!
//! Invariant: this module and the components depend on `channel`, `dead_letter`, `event`,
//! `metrics` and `error`, never on `config` or `topology` (which depend on them).

pub mod context;

use crate::error::{BuildError, ConfigIssue, Task};
use crate::event::Event;
use crate::metrics::ComponentMetrics;
pub use context::{ShutdownSignal, SinkContext, SourceContext, SourceSender};

/// A `[sources.<id>]` type.
pub trait SourceComponent {
    /// The validated config `build` starts from.
    type Checked: Send + 'static;

    /// Checks the config without I/O, reporting every problem found.
    fn check(&self) -> Result<Self::Checked, Vec<ConfigIssue>>;

    /// Does the I/O the source needs and returns its task, which reads until shutdown.
    fn build(&self, checked: Self::Checked, cx: SourceContext) -> Result<Task, BuildError>;

    /// Does the source attach an acknowledgement handle to what it sends and advance its
    /// position (a checkpoint, an offset) only once the handle fires?
    fn acknowledges(&self) -> bool {
        false
    }
}

/// A `[transforms.<id>]` type. Transforms are synchronous and do no I/O when built (a
/// transform that must read files, as `drift` reads its profiles, overrides `check`).
pub trait TransformComponent {
    /// The transform this config builds.
    type Built: Transform;

    /// Compiles the transform: patterns, programs, paths. Pure.
    fn build(&self, metrics: &ComponentMetrics) -> Result<Self::Built, ConfigIssue>;

    /// Checks the config; by default by building it against `metrics`, so the checks are
    /// written once.
    fn check(&self, metrics: &ComponentMetrics) -> Vec<ConfigIssue> {
        self.build(metrics).err().into_iter().collect()
    }

    /// Named outputs besides the default one (`<id>.<name>` in `inputs`).
    fn outputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// Does each batch's result depend on that batch alone (a parser, a remap), so that
    /// several instances may transform batches at once? The topology then builds one per core
    /// and keeps the outputs in input order ([`crate::transforms::runner`]). False for a
    /// transform that counts, samples or compares across batches.
    fn concurrent(&self) -> bool {
        false
    }

    /// The only fields this transform reads, when it passes none of its input events on (it
    /// emits events of its own, as `drift` emits reports). Its input then gets copies holding
    /// just these fields instead of copies of whole events ([`crate::channel::Fanout`]).
    fn reads(&self) -> Option<Vec<vrl::path::OwnedValuePath>> {
        None
    }
}

/// A `[sinks.<id>]` type.
pub trait SinkComponent {
    /// The validated config `build` starts from.
    type Checked: Send + 'static;

    /// Checks the config without I/O, reporting every problem found.
    fn check(&self) -> Result<Self::Checked, Vec<ConfigIssue>>;

    /// Does the I/O the sink needs and returns its task, which runs until its input closes.
    fn build(&self, checked: Self::Checked, cx: SinkContext) -> Result<Task, BuildError>;

    /// Does the sink take blocks of lines ([`crate::event::LineBlock`]) and write them as
    /// they are? A source whose consumers all do sends blocks instead of events.
    fn writes_lines_as_read(&self) -> bool {
        false
    }
}

/// Most workers of one component: past a handful of cores one stage rarely needs more, and
/// each worker holds its own compiled programs and buffers.
const MAX_WORKERS: usize = 8;

/// How many workers a component whose work can be split by batch uses: one per core weir may
/// run on (its CPU affinity counts), at most [`MAX_WORKERS`].
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS)
}

/// A transform's per-batch work.
pub trait Transform: Send + 'static {
    /// Processes `events`, pushing results into `out`.
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput);
}

/// Where a transform puts its results: the default output and its named outputs, in the order
/// of [`TransformComponent::outputs`].
pub struct TransformOutput {
    pub primary: Vec<Event>,
    pub named: Vec<Vec<Event>>,
}

impl TransformOutput {
    pub fn new(named: usize) -> Self {
        Self { primary: Vec::new(), named: (0..named).map(|_| Vec::new()).collect() }
    }

    pub fn push(&mut self, event: Event) {
        self.primary.push(event);
    }

    /// Pushes to the named output at `index`.
    pub fn push_named(&mut self, index: usize, event: Event) {
        match self.named.get_mut(index) {
            Some(v) => v.push(event),
            // An index beyond the declared outputs is a programming error; keep the event.
            None => self.primary.push(event),
        }
    }
}

/// Declares the closed enum of one component kind, one variant per `type`, and generates its
/// dispatch: the `type` names, deserialization of a component's table by its `type`, and the
/// kind's trait methods (`check`, `build` and the capabilities) on the enum.
///
/// ```ignore
/// crate::component_enum! {
///     sink SinkConfig {
///         "blackhole" => Blackhole(blackhole::BlackholeConfig),
///     }
/// }
/// ```
#[macro_export]
macro_rules! component_enum {
    ($kind:ident $(#[$meta:meta])* $name:ident { $($tag:literal => $variant:ident($ty:ty)),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub enum $name {
            $($variant($ty)),*
        }

        impl $name {
            /// Every `type` this kind accepts.
            pub const TYPES: &'static [&'static str] = &[$($tag),*];

            /// The `type` as written in the TOML.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $tag),*
                }
            }

            /// Deserializes the table of a component of type `ty`; `None` for an unknown type.
            pub fn deserialize_typed<'de, D: serde::Deserializer<'de>>(
                ty: &str,
                de: D,
            ) -> Option<Result<Self, D::Error>> {
                match ty {
                    $($tag => Some(<$ty as serde::Deserialize>::deserialize(de).map(Self::$variant)),)*
                    _ => None,
                }
            }
        }

        $crate::component_enum!(@dispatch $kind $name { $($variant($ty)),* });
    };

    (@dispatch source $name:ident { $($variant:ident($ty:ty)),* }) => {
        impl $name {
            /// Checks the config without I/O ([`SourceComponent::check`]).
            pub fn check(&self) -> Vec<$crate::error::ConfigIssue> {
                use $crate::component::SourceComponent;
                match self {
                    $(Self::$variant(c) => c.check().err().unwrap_or_default()),*
                }
            }

            /// Checks the config and builds the source's task ([`SourceComponent::build`]).
            pub fn build(
                &self,
                cx: $crate::component::SourceContext,
            ) -> Result<$crate::error::Task, $crate::error::BuildError> {
                use $crate::component::SourceComponent;
                match self {
                    $(Self::$variant(c) => c.build(c.check()?, cx)),*
                }
            }

            /// [`SourceComponent::acknowledges`].
            pub fn acknowledges(&self) -> bool {
                use $crate::component::SourceComponent;
                match self {
                    $(Self::$variant(c) => c.acknowledges()),*
                }
            }
        }
    };

    (@dispatch transform $name:ident { $($variant:ident($ty:ty)),* }) => {
        impl $name {
            /// Checks the config without I/O ([`TransformComponent::check`]).
            pub fn check(
                &self,
                metrics: &$crate::metrics::ComponentMetrics,
            ) -> Vec<$crate::error::ConfigIssue> {
                use $crate::component::TransformComponent;
                match self {
                    $(Self::$variant(c) => c.check(metrics)),*
                }
            }

            /// Builds the transform ([`TransformComponent::build`]).
            pub fn build(
                &self,
                metrics: &$crate::metrics::ComponentMetrics,
            ) -> Result<Box<dyn $crate::component::Transform>, $crate::error::ConfigIssue> {
                use $crate::component::TransformComponent;
                Ok(match self {
                    $(Self::$variant(c) => Box::new(c.build(metrics)?)),*
                })
            }

            /// [`TransformComponent::outputs`].
            pub fn outputs(&self) -> Vec<String> {
                use $crate::component::TransformComponent;
                match self {
                    $(Self::$variant(c) => c.outputs()),*
                }
            }

            /// [`TransformComponent::concurrent`].
            pub fn concurrent(&self) -> bool {
                use $crate::component::TransformComponent;
                match self {
                    $(Self::$variant(c) => c.concurrent()),*
                }
            }

            /// [`TransformComponent::reads`].
            pub fn reads(&self) -> Option<Vec<vrl::path::OwnedValuePath>> {
                use $crate::component::TransformComponent;
                match self {
                    $(Self::$variant(c) => c.reads()),*
                }
            }
        }
    };

    (@dispatch sink $name:ident { $($variant:ident($ty:ty)),* }) => {
        impl $name {
            /// Checks the config without I/O ([`SinkComponent::check`]).
            pub fn check(&self) -> Vec<$crate::error::ConfigIssue> {
                use $crate::component::SinkComponent;
                match self {
                    $(Self::$variant(c) => c.check().err().unwrap_or_default()),*
                }
            }

            /// Checks the config and builds the sink's task ([`SinkComponent::build`]).
            pub fn build(
                &self,
                cx: $crate::component::SinkContext,
            ) -> Result<$crate::error::Task, $crate::error::BuildError> {
                use $crate::component::SinkComponent;
                match self {
                    $(Self::$variant(c) => c.build(c.check()?, cx)),*
                }
            }

            /// [`SinkComponent::writes_lines_as_read`].
            pub fn writes_lines_as_read(&self) -> bool {
                use $crate::component::SinkComponent;
                match self {
                    $(Self::$variant(c) => c.writes_lines_as_read()),*
                }
            }
        }
    };
}
