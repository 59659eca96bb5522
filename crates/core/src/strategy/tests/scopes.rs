//! EPL's scope rules (strategy_test.py, graph_test.py::test_outside_strategy_error) on
//! `ScopeStack`, with the exact error messages.

use crate::error::Error;
use crate::ir::Strategy::{Replicate, Split};
use crate::ir::{TaskGraph, TaskGraphId};
use crate::strategy::ScopeStack;

fn tg(i: u32) -> TaskGraphId {
    TaskGraphId(i)
}

fn names(s: &ScopeStack) -> Vec<&str> {
    s.taskgraphs().iter().map(|t| t.name.as_str()).collect()
}

/// `(key, message)` of a config error.
fn config_error(e: Error) -> (String, String) {
    let message = e.to_string();
    match e {
        Error::Config { key, .. } => (key, message),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn sequential_scopes_get_increasing_indices() {
    // strategy_test.py::test_strategies
    let mut s = ScopeStack::new(false);
    assert_eq!(s.enter(Replicate, 1, "stage_strategy_1"), Ok(tg(0)));
    assert_eq!(
        s.open_scope().map(|t| t.name.as_str()),
        Some("stage_strategy_1")
    );
    assert_eq!(s.op_taskgraph(), Ok(tg(0)));
    assert_eq!(s.exit(), Ok(Some(tg(0))));
    assert_eq!(s.open_scope(), None);
    assert_eq!(s.enter(Replicate, 1, "stage_strategy_2"), Ok(tg(1)));
    assert_eq!(s.op_taskgraph(), Ok(tg(1)));
    assert_eq!(s.op_taskgraph(), Ok(tg(1)));
    assert_eq!(s.exit(), Ok(Some(tg(1))));
    let expected = TaskGraph {
        name: "stage_strategy_2".into(),
        strategy: Replicate,
        device_count: 1,
    };
    assert_eq!(s.taskgraphs()[1], expected);
}

#[test]
fn nesting_errors_name_both_scopes() {
    // strategy_test.py::test_nest_same_type_error, test_nest_stage_error,
    // test_nest_split_replica_error
    let cases = [
        (
            Split,
            "",
            Split,
            "",
            "cannot open split scope 'Split' inside split scope 'Split': \
          strategy scopes of the same type do not nest",
        ),
        (
            Replicate,
            "rep_1",
            Replicate,
            "rep_2",
            "cannot open replicate scope 'rep_2' inside \
          replicate scope 'rep_1': strategy scopes of the same type do not nest",
        ),
        (
            Replicate,
            "stage",
            Replicate,
            "stage",
            "cannot open replicate scope 'stage' inside \
          replicate scope 'stage': strategy scopes of the same type do not nest",
        ),
        (
            Split,
            "head",
            Replicate,
            "body",
            "cannot open replicate scope 'body' inside split \
          scope 'head': nothing may be nested inside a split scope",
        ),
        (
            Replicate,
            "",
            Split,
            "",
            "cannot open split scope 'Split' inside replicate scope \
          'Replicate': a split scope may not be nested inside a replicate scope",
        ),
    ];
    for (outer, outer_name, inner, inner_name, message) in cases {
        let mut s = ScopeStack::new(false);
        s.enter(outer, 1, outer_name).unwrap();
        let err = s.enter(inner, 1, inner_name).unwrap_err();
        assert_eq!(config_error(err), ("strategy".into(), message.into()));
        // The failed enter leaves the outer scope open.
        assert_eq!(s.open_scope().map(|t| t.strategy), Some(outer));
    }
}

#[test]
fn default_strategy_opens_a_taskgraph_per_call() {
    // strategy_test.py::test_default_strategy
    let mut s = ScopeStack::new(false);
    assert_eq!(s.set_default(Replicate, 1, "r1"), Ok(tg(0)));
    assert_eq!(s.taskgraphs().len(), 1);
    assert_eq!(s.set_default(Replicate, 1, "r2"), Ok(tg(1)));
    assert_eq!(
        (s.taskgraphs().len(), s.default_taskgraph()),
        (2, Some(tg(1)))
    );
    // Entering scopes without creating ops opens no TaskGraph.
    for name in ["r1", "r2"] {
        s.enter(Replicate, 1, name).unwrap();
        assert_eq!(s.exit(), Ok(None));
    }
    assert_eq!(names(&s), ["r1", "r2"]);
}

#[test]
fn default_is_suspended_inside_a_scope_and_restored_after() {
    // The MoE pattern: default replicate plus a split scope (not a nesting).
    let mut s = ScopeStack::new(false);
    s.set_default(Replicate, 4, "attention").unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(0)));
    assert_eq!(s.enter(Split, 4, "experts"), Ok(tg(1)));
    assert_eq!(s.op_taskgraph(), Ok(tg(1)));
    s.exit().unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(0)));
}

#[test]
fn ops_outside_scopes_follow_epl_default_rules() {
    // graph_test.py::test_outside_strategy_error
    let mut s = ScopeStack::new(false);
    assert_eq!(s.op_taskgraph(), Ok(tg(0))); // x1: opens an implicit TaskGraph 0
    assert_eq!(names(&s), ["default"]);
    assert_eq!(s.enter(Replicate, 1, "replica_0"), Ok(tg(0))); // takes TaskGraph 0 over
    assert_eq!(s.op_taskgraph(), Ok(tg(0))); // x2
    s.exit().unwrap();
    assert_eq!(s.enter(Replicate, 1, "replica_1"), Ok(tg(1)));
    assert_eq!(s.op_taskgraph(), Ok(tg(1)));
    s.exit().unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(1))); // x3: the last non-split TaskGraph
    assert_eq!(s.default_taskgraph(), None);
    assert_eq!(s.set_default(Replicate, 1, "replica_2"), Ok(tg(2)));
    assert_eq!(s.op_taskgraph(), Ok(tg(2))); // x4
    s.enter(Replicate, 1, "replica_3").unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(3))); // x5
    s.exit().unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(2))); // the user default wins over the last one
    assert_eq!(
        names(&s),
        ["replica_0", "replica_1", "replica_2", "replica_3"]
    );
}

#[test]
fn ops_outside_scopes_skip_split_taskgraphs() {
    let mut s = ScopeStack::new(false);
    s.enter(Replicate, 1, "body").unwrap();
    s.op_taskgraph().unwrap();
    s.exit().unwrap();
    s.enter(Split, 2, "head").unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(1)));
    s.exit().unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(0)));
}

#[test]
fn a_split_taking_over_the_implicit_taskgraph_is_not_a_default() {
    let mut s = ScopeStack::new(false);
    s.op_taskgraph().unwrap();
    s.enter(Split, 2, "head").unwrap();
    assert_eq!(s.op_taskgraph(), Ok(tg(0)));
    s.exit().unwrap();
    assert_eq!(
        config_error(s.op_taskgraph().unwrap_err()),
        (
            "strategy".into(),
            "an op created outside every strategy scope has no TaskGraph: such ops join the \
             default strategy or the last replicate TaskGraph, and there are only split \
             TaskGraphs; wrap the op in a scope or call set_default(replicate(...)) first"
                .into()
        )
    );
}

#[test]
fn default_must_be_replicate_and_set_outside_scopes() {
    let mut s = ScopeStack::new(false);
    assert_eq!(
        config_error(s.set_default(Split, 2, "head").unwrap_err()).1,
        "cannot make split scope 'head' the default strategy: only a replicate strategy can be \
         the default"
    );
    s.enter(Replicate, 1, "body").unwrap();
    assert_eq!(
        config_error(s.set_default(Replicate, 1, "next").unwrap_err()).1,
        "cannot make replicate scope 'next' the default strategy inside the open replicate \
         scope 'body'; set the default outside strategy scopes"
    );
    assert!(s.taskgraphs().is_empty());
}

#[test]
fn auto_parallel_refuses_every_scope() {
    let mut s = ScopeStack::new(true);
    assert_eq!(
        config_error(s.enter(Replicate, 1, "stage_0").unwrap_err()),
        (
            "auto.auto_parallel".into(),
            "cannot open replicate scope 'stage_0': strategy scopes are not allowed when \
             auto.auto_parallel is true (weft partitions the stages itself)"
                .into()
        )
    );
    assert_eq!(
        config_error(s.set_default(Replicate, 1, "").unwrap_err()).1,
        "cannot make replicate scope 'Replicate' the default strategy: strategy scopes are not \
         allowed when auto.auto_parallel is true (weft partitions the stages itself)"
    );
    // Without scopes, every op lands in the one default TaskGraph.
    assert_eq!((s.op_taskgraph(), s.op_taskgraph()), (Ok(tg(0)), Ok(tg(0))));
}

#[test]
fn device_count_must_be_positive() {
    let mut s = ScopeStack::new(false);
    assert_eq!(
        config_error(s.enter(Split, 0, "head").unwrap_err()),
        (
            "strategy".into(),
            "cannot open split scope 'head': device_count must be >= 1, got 0".into()
        )
    );
    assert_eq!(
        config_error(s.set_default(Replicate, 0, "r").unwrap_err()).1,
        "cannot make replicate scope 'r' the default strategy: device_count must be >= 1, got 0"
    );
}

#[test]
fn exit_without_a_scope_is_a_binding_bug() {
    let mut s = ScopeStack::new(false);
    assert_eq!(
        s.exit(),
        Err(Error::internal("strategy scope exit without an open scope"))
    );
}
