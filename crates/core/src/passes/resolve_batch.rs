//! Resolve the symbolic batch dimension to a concrete per-device, per-micro-batch size.

use crate::error::Result;
use crate::ir::{Graph, Op, TensorType, infer};

/// Replace every `Dim::Batch(k)` with `Dim::Fixed(k * batch)`, in node types and op attributes.
/// A mixture-of-experts dispatch's slot count depends on the batch (its capacity), so its type
/// and those of the values computed from it are inferred again.
pub fn resolve_batch(graph: Graph, batch: usize) -> Result<Graph> {
    let mut g = graph;
    let mut retype = vec![false; g.nodes.len()];
    for i in 0..g.nodes.len() {
        let n = &mut g.nodes[i];
        n.shape = n.shape.resolve(batch);
        match &mut n.op {
            Op::Input { shape, .. }
            | Op::Reshape { shape }
            | Op::Expand { shape }
            | Op::SumTo { shape }
            | Op::Fill { shape, .. } => *shape = shape.resolve(batch),
            _ => {}
        }
        let n = &g.nodes[i];
        retype[i] =
            matches!(n.op, Op::MoeDispatch { .. }) || n.inputs.iter().any(|x| retype[x.index()]);
        if retype[i] {
            let types: Vec<TensorType> = n
                .inputs
                .iter()
                .map(|x| {
                    let x = &g.nodes[x.index()];
                    TensorType {
                        shape: x.shape.clone(),
                        dtype: x.dtype,
                    }
                })
                .collect();
            g.nodes[i].shape = infer(&g.nodes[i].op, &types)?.shape;
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, Dim, GraphBuilder, Op, ReduceOp, Shape};

    #[test]
    fn resolves_batch_in_types_and_attributes() {
        let mut b = GraphBuilder::new();
        let x = b
            .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(3)]), DType::F32)
            .unwrap();
        let shape = b.reshape_dims(x, &[-1]).unwrap();
        assert_eq!(shape.to_string(), "[3B]");
        let r = b.op(Op::Reshape { shape }, &[x]).unwrap();
        let s = b
            .op(
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axis: 0,
                    keepdim: false,
                },
                &[r],
            )
            .unwrap();
        let g = b.finish(s).unwrap();
        let g = crate::passes::run_pass(g, |g| resolve_batch(g, 4)).unwrap();
        assert_eq!(g.node(r).shape.to_string(), "[12]");
        assert!(
            g.to_string().contains("%1 = reshape(%0) : f32[12] tg0 fwd"),
            "{g}"
        );
    }
}
