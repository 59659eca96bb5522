//! Which pipeline stage computes each node: data every layer below the passes reads (the
//! executor's programs, the interpreter), so it lives in the IR; `passes::assign_stages` builds it.

use super::Graph;

/// Stage of every node, and each stage's TaskGraph name.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMap {
    pub stage_of: Vec<usize>,
    pub names: Vec<String>,
}

impl StageMap {
    pub fn stages(&self) -> usize {
        self.names.len()
    }

    /// Every node on stage 0 (single-stage layouts).
    pub fn single(graph: &Graph) -> StageMap {
        let name = graph
            .taskgraphs
            .first()
            .map_or("default".to_string(), |t| t.name.clone());
        StageMap {
            stage_of: vec![0; graph.nodes.len()],
            names: vec![name],
        }
    }
}
