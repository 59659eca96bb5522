//! NCCL's cost models of collectives over `n` ranks moving `bytes`, on one link class (bandwidth
//! one way per rank, latency per step): ring all-reduce 2(n-1)(a + S/(nB)), double-binary-tree
//! all-reduce 2*ceil(log2 n)*a + 2S/B (NCCL's tuner takes the faster), ring reduce-scatter and
//! all-gather (n-1)(a + S/(nB)), pairwise all-to-all (n-1)(a + S/(nB)), send/recv a + S/B.
//! `S` is always the whole buffer one rank holds before (all-reduce, reduce-scatter) or after
//! (all-gather) the collective.

use super::hardware::{Hardware, Link};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Collective {
    AllReduce,
    ReduceScatter,
    AllGather,
    AllToAll,
    SendRecv,
}

/// Seconds `c` takes for `bytes` over `n` ranks on `link`, its bandwidth scaled by `efficiency`.
pub fn time(c: Collective, bytes: f64, n: usize, link: Link, efficiency: f64) -> f64 {
    if n <= 1 && c != Collective::SendRecv {
        return 0.0;
    }
    let bw = link.bandwidth * efficiency;
    let a = link.latency;
    let steps = (n - 1) as f64;
    let chunk = bytes / n as f64 / bw;
    match c {
        Collective::AllReduce => {
            let ring = 2.0 * steps * (a + chunk);
            let tree = 2.0 * (n as f64).log2().ceil() * a + 2.0 * bytes / bw;
            ring.min(tree)
        }
        Collective::ReduceScatter | Collective::AllGather | Collective::AllToAll => {
            steps * (a + chunk)
        }
        Collective::SendRecv => a + bytes / bw,
    }
}

/// The link a group crosses: NVLink-class inside one node, the network once it spans nodes
/// (every rank then sends through its own NIC, the slower hop of the ring).
pub fn group_link(hw: &Hardware, nodes_spanned: usize) -> Link {
    if nodes_spanned <= 1 {
        hw.intra_node
    } else {
        hw.inter_node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NVLINK: Link = Link {
        bandwidth: 300e9,
        latency: 5e-6,
    };
    const IB: Link = Link {
        bandwidth: 25e9,
        latency: 10e-6,
    };
    const GIB: f64 = (1u64 << 30) as f64;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-9), "{a} != {b}");
    }

    /// Hand-computed: 1 GiB over 8 A100s on NVLink: ring 2*7*(5us + 2^30/8/300e9 s) =
    /// 14 * (5e-6 + 4.473924267e-4) = 6.333494e-3 s; tree 2*3*5e-6 + 2*2^30/300e9 = 7.188e-3 s;
    /// the ring wins.
    #[test]
    fn all_reduce_ring_on_nvlink() {
        let t = time(Collective::AllReduce, GIB, 8, NVLINK, 1.0);
        close(t, 14.0 * (5e-6 + GIB / 8.0 / 300e9));
        assert!((t - 6.3335e-3).abs() < 1e-7, "{t}");
    }

    /// Hand-computed: 64 KiB over 1024 ranks on InfiniBand: ring 2*1023*(10us + 64 B/25e9) =
    /// 2046 * 1.00026e-5 = 2.04654e-2 s; tree 2*10*10us + 2*65536/25e9 = 2.0524e-4 s; the tree
    /// wins (latency-bound).
    #[test]
    fn small_all_reduce_across_many_nodes_takes_the_tree() {
        let t = time(Collective::AllReduce, 65536.0, 1024, IB, 1.0);
        close(t, 20.0 * 10e-6 + 2.0 * 65536.0 / 25e9);
        assert!((t - 2.05243e-4).abs() < 1e-9, "{t}");
    }

    /// Hand-computed at 80% of 25 GB/s = 20 GB/s: reduce-scatter of 1 GiB over 4 ranks:
    /// 3 * (10us + 2^30/4/20e9) = 3 * (1e-5 + 1.34217728e-2) = 4.0295318e-2 s; all-gather and
    /// all-to-all alike; send/recv of 1 GiB: 10us + 2^30/20e9 = 5.3697e-2 s.
    #[test]
    fn scatter_gather_all_to_all_and_send() {
        for c in [
            Collective::ReduceScatter,
            Collective::AllGather,
            Collective::AllToAll,
        ] {
            let t = time(c, GIB, 4, IB, 0.8);
            assert!((t - 4.0295318e-2).abs() < 1e-9, "{c:?} {t}");
        }
        let t = time(Collective::SendRecv, GIB, 2, IB, 0.8);
        assert!((t - 5.3697091e-2).abs() < 1e-9, "{t}");
    }

    #[test]
    fn one_rank_costs_nothing() {
        assert_eq!(time(Collective::AllReduce, GIB, 1, NVLINK, 1.0), 0.0);
        assert_eq!(time(Collective::AllGather, GIB, 1, NVLINK, 1.0), 0.0);
    }
}
