//! The scope rules EPL enforces while a model is built, as a small state machine the binding
//! drives: `enter`/`exit` for `replicate(...)` / `split(...)` scopes, `set_default` for
//! `set_default_strategy`, and `op_taskgraph` for every op created, which says which TaskGraph
//! the op belongs to.
//!
//! Where an op goes (EPL's `Graph._get_current_taskgraph` / `fetch_default_taskgraph`):
//! 1. inside an explicit scope: that scope's TaskGraph;
//! 2. else the TaskGraph of the latest `set_default` (suspended while a scope is open);
//! 3. else the last non-split TaskGraph opened so far;
//! 4. else, when no TaskGraph exists yet, a new TaskGraph 0 (`replicate(1)` named `default`)
//!    that the next scope or default takes over, so ops written before the first scope join
//!    the first stage;
//! 5. else (only split TaskGraphs, no default) an error.
//!
//! As in EPL, a scope's TaskGraph is opened by its first op: a scope without ops opens none (and
//! so gets no devices), and `enter` returns the index the scope will take. `set_default` opens
//! its TaskGraph at once, and every call opens a new one (how EPL cuts BERT into stages).
//! EPL's mapping of a re-entered scope back to its old TaskGraph under `reuse=True` variable
//! scopes has no counterpart here: weft has no variable scopes, so every scope is new.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::ir::{Strategy, TaskGraph, TaskGraphId};

use super::render::strategy_name;

/// An explicit scope that is open; `taskgraph` is set once its first op arrived.
#[derive(Debug, Clone)]
struct OpenScope {
    spec: TaskGraph,
    taskgraph: Option<TaskGraphId>,
}

/// The strategy scopes of one model being built.
#[derive(Debug, Clone, Default)]
pub struct ScopeStack {
    auto_parallel: bool,
    taskgraphs: Vec<TaskGraph>,
    /// TaskGraph 0 was opened by an op outside every scope and no scope has claimed it yet.
    unclaimed_first: bool,
    /// At most one: every kind of nesting is an error.
    open: Option<OpenScope>,
    user_default: Option<TaskGraphId>,
    last_replicate: Option<TaskGraphId>,
}

fn id(index: usize) -> TaskGraphId {
    TaskGraphId(index as u32)
}

fn describe(spec: &TaskGraph) -> String {
    format!("{} scope '{}'", strategy_name(spec.strategy), spec.name)
}

/// EPL's default names when a scope is given none.
fn spec(strategy: Strategy, device_count: usize, name: &str) -> TaskGraph {
    let name = match (name.is_empty(), strategy) {
        (false, _) => name.to_string(),
        (true, Strategy::Replicate) => "Replicate".to_string(),
        (true, Strategy::Split) => "Split".to_string(),
    };
    TaskGraph {
        name,
        strategy,
        device_count,
    }
}

impl ScopeStack {
    /// `auto_parallel` is `auto.auto_parallel`: weft then places stages itself and refuses
    /// scopes.
    pub fn new(auto_parallel: bool) -> Self {
        ScopeStack {
            auto_parallel,
            ..ScopeStack::default()
        }
    }

    pub fn from_config(config: &Config) -> Self {
        ScopeStack::new(config.auto.auto_parallel)
    }

    /// Open a `replicate` / `split` scope; returns the TaskGraph its ops will belong to.
    pub fn enter(
        &mut self,
        strategy: Strategy,
        device_count: usize,
        name: &str,
    ) -> Result<TaskGraphId> {
        let inner = spec(strategy, device_count, name);
        self.check_allowed(&format!("cannot open {}", describe(&inner)), &inner)?;
        if let Some(outer) = &self.open {
            return Err(nesting_error(&outer.spec, &inner));
        }
        self.open = Some(OpenScope {
            spec: inner,
            taskgraph: None,
        });
        Ok(self.next_id())
    }

    /// Close the open scope; returns its TaskGraph, or `None` when no op was created in it. The
    /// default strategy (if any) applies again.
    pub fn exit(&mut self) -> Result<Option<TaskGraphId>> {
        match self.open.take() {
            Some(scope) => Ok(scope.taskgraph),
            None => Err(Error::internal("strategy scope exit without an open scope")),
        }
    }

    /// EPL's `set_default_strategy`: only `replicate`; opens a new TaskGraph now, which every
    /// op outside explicit scopes joins from here on.
    pub fn set_default(
        &mut self,
        strategy: Strategy,
        device_count: usize,
        name: &str,
    ) -> Result<TaskGraphId> {
        let spec = spec(strategy, device_count, name);
        let what = format!("cannot make {} the default strategy", describe(&spec));
        if strategy == Strategy::Split {
            let msg = format!("{what}: only a replicate strategy can be the default");
            return Err(Error::config("strategy", msg));
        }
        self.check_allowed(&what, &spec)?;
        if let Some(open) = &self.open {
            let msg = format!(
                "{what} inside the open {}; set the default outside strategy scopes",
                describe(&open.spec)
            );
            return Err(Error::config("strategy", msg));
        }
        let tg = self.open_taskgraph(spec);
        self.user_default = Some(tg);
        Ok(tg)
    }

    /// The TaskGraph an op created now belongs to (the rules in the module doc); opens the
    /// scope's TaskGraph on its first op.
    pub fn op_taskgraph(&mut self) -> Result<TaskGraphId> {
        if let Some(scope) = &self.open {
            if let Some(tg) = scope.taskgraph {
                return Ok(tg);
            }
            let tg = self.open_taskgraph(scope.spec.clone());
            self.open.as_mut().expect("open scope").taskgraph = Some(tg);
            return Ok(tg);
        }
        if let Some(tg) = self.user_default.or(self.last_replicate) {
            return Ok(tg);
        }
        if self.taskgraphs.is_empty() {
            let tg = self.open_taskgraph(spec(Strategy::Replicate, 1, "default"));
            self.unclaimed_first = true;
            return Ok(tg);
        }
        Err(Error::config(
            "strategy",
            "an op created outside every strategy scope has no TaskGraph: such ops join the \
             default strategy or the last replicate TaskGraph, and there are only split \
             TaskGraphs; wrap the op in a scope or call set_default(replicate(...)) first",
        ))
    }

    /// The TaskGraphs opened so far, in order (TaskGraph `i` is `TaskGraphId(i)`).
    pub fn taskgraphs(&self) -> &[TaskGraph] {
        &self.taskgraphs
    }

    pub fn into_taskgraphs(self) -> Vec<TaskGraph> {
        self.taskgraphs
    }

    /// The explicit scope that is open, if any.
    pub fn open_scope(&self) -> Option<&TaskGraph> {
        self.open.as_ref().map(|s| &s.spec)
    }

    /// The TaskGraph of the latest `set_default`, if any.
    pub fn default_taskgraph(&self) -> Option<TaskGraphId> {
        self.user_default
    }

    fn check_allowed(&self, what: &str, spec: &TaskGraph) -> Result<()> {
        if self.auto_parallel {
            let msg = format!(
                "{what}: strategy scopes are not allowed when auto.auto_parallel is true (weft \
                 partitions the stages itself)"
            );
            return Err(Error::config("auto.auto_parallel", msg));
        }
        if spec.device_count == 0 {
            let msg = format!("{what}: device_count must be >= 1, got 0");
            return Err(Error::config("strategy", msg));
        }
        Ok(())
    }

    /// The index the next TaskGraph takes: 0 while the implicit first one is unclaimed.
    fn next_id(&self) -> TaskGraphId {
        if self.unclaimed_first {
            id(0)
        } else {
            id(self.taskgraphs.len())
        }
    }

    /// EPL's `_add_taskgraph`: the first scope or default takes over an implicit TaskGraph 0,
    /// otherwise a TaskGraph is appended.
    fn open_taskgraph(&mut self, spec: TaskGraph) -> TaskGraphId {
        let tg = self.next_id();
        let is_split = spec.strategy == Strategy::Split;
        if self.unclaimed_first {
            self.taskgraphs[0] = spec;
            self.unclaimed_first = false;
        } else {
            self.taskgraphs.push(spec);
        }
        if is_split {
            // EPL would keep pointing at a TaskGraph 0 a split scope just took over; the rule
            // it states is "the last non-split one", so forget it.
            if self.last_replicate == Some(tg) {
                self.last_replicate = None;
            }
        } else {
            self.last_replicate = Some(tg);
        }
        tg
    }
}

/// EPL's three nesting rules, checked in its order: same type, anything inside split, split
/// inside replicate. Together they forbid every nesting; the message says which rule.
fn nesting_error(outer: &TaskGraph, inner: &TaskGraph) -> Error {
    let rule = match (outer.strategy, inner.strategy) {
        (a, b) if a == b => "strategy scopes of the same type do not nest",
        (Strategy::Split, _) => "nothing may be nested inside a split scope",
        (Strategy::Replicate, _) => "a split scope may not be nested inside a replicate scope",
    };
    let msg = format!(
        "cannot open {} inside {}: {rule}",
        describe(inner),
        describe(outer)
    );
    Error::config("strategy", msg)
}
/// A replicate TaskGraph runs one device per replica (replicas come from the devices left
/// over); a split TaskGraph over N devices is tensor parallelism (`passes::tensor_split`).
/// Never silently ignored.
pub fn check_device_count(strategy: Strategy, device_count: usize, name: &str) -> Result<()> {
    if device_count <= 1 || strategy == Strategy::Split {
        return Ok(());
    }
    let kind = strategy_name(strategy);
    let name = if name.is_empty() { "Replicate" } else { name };
    let message = format!(
        "{kind} scope '{name}' with deviceCount {device_count}: a replicate TaskGraph runs one \
         device per replica (replicas come from the devices left over: cpu:N runs N / stages \
         replicas); to divide its layers among {device_count} devices use a split scope \
         (tensor parallelism), or use deviceCount 1"
    );
    Err(Error::Unsupported {
        feature: format!("{kind} deviceCount > 1"),
        message,
    })
}
