use super::*;
use crate::ir::{BinaryOp, DType, Dim, GraphBuilder, ReduceOp, UnaryOp};

/// x [B, 8] -> fc (8 -> 16) -> gelu -> out (16 -> 8) -> mean, in a split scope over `n`.
fn mlp(n: usize) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b
        .input("x", Shape(vec![Dim::Batch(1), Dim::Fixed(8)]), DType::F32)
        .unwrap();
    b.open_taskgraph("mlp", Strategy::Split, n);
    let mut h = x;
    for (name, i, o) in [("fc", 8, 16), ("out", 16, 8)] {
        let w = b
            .parameter(&format!("{name}.weight"), Shape::fixed(&[i, o]), Init::Ones)
            .unwrap();
        let bias = b
            .parameter(&format!("{name}.bias"), Shape::fixed(&[o]), Init::Zeros)
            .unwrap();
        let mm = Op::MatMul {
            trans_a: false,
            trans_b: false,
        };
        let y = b.op(mm, &[h, w]).unwrap();
        h = b.op(Op::Binary(BinaryOp::Add), &[y, bias]).unwrap();
        if name == "fc" {
            h = b.op(Op::Unary(UnaryOp::Gelu), &[h]).unwrap();
        }
    }
    let shape = b.reshape_dims(h, &[-1]).unwrap();
    let flat = b.op(Op::Reshape { shape }, &[h]).unwrap();
    let mean = Op::Reduce {
        op: ReduceOp::Mean,
        axis: 0,
        keepdim: false,
    };
    let loss = b.op(mean, &[flat]).unwrap();
    let g = b.finish(loss).unwrap();
    crate::passes::resolve_batch(g, 4).unwrap()
}

#[test]
fn an_mlp_becomes_column_then_row_parallel_with_one_reduction() {
    let g = crate::passes::run_pass(mlp(2), |g| tensor_split(g, 1, 2, SplitOptions::default()))
        .unwrap();
    let text = g.to_string();
    for line in [
        "tp_copy(%0) : f32[4,8]",
        "parameter{name=fc.weight,init=shard(ones,full=[8, 16],axis=1,groups=1,parts=2,index=1)}() : f32[8,8]",
        "parameter{name=fc.bias,init=shard(zeros,full=[16],axis=0,groups=1,parts=2,index=1)}() : f32[8]",
        "parameter{name=out.weight,init=shard(ones,full=[16, 8],axis=0,groups=1,parts=2,index=1)}() : f32[8,8]",
        "parameter{name=out.bias,init=zeros}() : f32[8]",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // The partial sum of the row-parallel matmul is reduced before its (replicated) bias.
    let reduce = g.ids().find(|&i| g.node(i).op == Op::TpReduce).unwrap();
    let reader = g
        .ids()
        .find(|&i| g.node(i).inputs.contains(&reduce))
        .unwrap();
    assert_eq!(g.node(reader).op, Op::Binary(BinaryOp::Add));
    let count = |op: &Op| g.nodes.iter().filter(|n| &n.op == op).count();
    assert_eq!((count(&Op::TpCopy), count(&Op::TpReduce)), (1, 1));
    // One device: the identity.
    assert_eq!(
        tensor_split(mlp(1), 0, 1, SplitOptions::default()).unwrap(),
        mlp(1)
    );
}

#[test]
fn split_scopes_of_one_model_share_their_device_count() {
    let mut g = mlp(2);
    g.taskgraphs.push(crate::ir::TaskGraph {
        name: "head".into(),
        strategy: Strategy::Split,
        device_count: 4,
    });
    assert_eq!(
        tp_width(&g).unwrap_err().to_string(),
        "split scope 'head' has deviceCount 4 but an earlier split scope has 2; every \
         split scope of a model must use the same deviceCount"
    );
    assert_eq!(tp_width(&mlp(2)).unwrap(), 2);
}
