//! Data-parallel gradient reduction in device memory, overlapped with backward: the form of
//! `overlap` for engines with device groups. A final gradient's buffer is handed over by the
//! executor (`GradSink::Device`); when every gradient of a fused bucket is in, the bucket goes
//! to its channel's communication thread, which all-reduces its buffers as one group call (no
//! packing copy, no host staging), and `finish` gives each buffer back, scaled. The buckets are
//! the host reducer's (`BucketLayout`), so both reduce the same tensors together.

use super::overlap::BucketLayout;
use crate::collectives::{DeviceCommunicator, ReduceOp};
use crate::error::{Error, Result};
use crate::exec::{Backend, Executor};
use crate::ir::NodeId;
use std::sync::{Arc, mpsc};
use std::thread::{Scope, ScopedJoinHandle};

type Held<Buf> = Vec<(NodeId, Buf)>;

pub(super) struct DeviceOverlap<'scope, Buf: Send> {
    layout: Arc<BucketLayout>,
    /// Each bucket's gradients handed over so far.
    held: Vec<Held<Buf>>,
    senders: Vec<mpsc::Sender<Held<Buf>>>,
    workers: Vec<ScopedJoinHandle<'scope, (Held<Buf>, Result<()>)>>,
}

impl<'scope, Buf: Send + 'scope> DeviceOverlap<'scope, Buf> {
    /// Reduce `layout`'s buckets as they fill, one communication thread per channel.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        channels: &[&'env dyn DeviceCommunicator<Buf>],
        layout: &Arc<BucketLayout>,
    ) -> DeviceOverlap<'scope, Buf> {
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for &comm in channels {
            let (tx, rx) = mpsc::channel::<Held<Buf>>();
            senders.push(tx);
            workers.push(scope.spawn(move || {
                let mut done = Vec::new();
                // After a failure the buffers still come back, unreduced: the step fails, and
                // the executor keeps its memory accounting whole.
                let mut result = Ok(());
                for mut bucket in rx {
                    if result.is_ok() {
                        let mut bufs: Vec<&mut Buf> = bucket.iter_mut().map(|(_, b)| b).collect();
                        result = comm.all_reduce(&mut bufs, ReduceOp::Sum);
                    }
                    done.extend(bucket);
                }
                (done, result)
            }));
        }
        DeviceOverlap {
            held: layout.buckets.iter().map(|_| Vec::new()).collect(),
            layout: layout.clone(),
            senders,
            workers,
        }
    }

    /// A parameter's final gradient: hold it in its bucket; launch the bucket when full.
    pub fn ready(&mut self, param: NodeId, grad: Buf) -> Result<()> {
        let Some(&(b, _, _)) = self.layout.slot_of.get(&param) else {
            return Err(Error::internal(format!("{param}'s gradient has no bucket")));
        };
        self.held[b].push((param, grad));
        if self.held[b].len() < self.layout.buckets[b].tensors.len() {
            return Ok(());
        }
        // Every replica posts a bucket's tensors in its layout order, whatever order backward
        // finished them in.
        let mut bucket = std::mem::take(&mut self.held[b]);
        bucket.sort_by_key(|(p, _)| self.layout.slot_of[p].1);
        let tx = &self.senders[b % self.senders.len()];
        tx.send(bucket)
            .map_err(|_| Error::internal("a gradient communication thread stopped"))
    }

    /// Wait for every bucket and give the reduced gradients back, multiplied by `scale`.
    pub fn finish<B: Backend<Buffer = Buf>>(
        mut self,
        exec: &mut Executor<B>,
        scale: f32,
    ) -> Result<()> {
        drop(self.senders);
        let incomplete = self.held.iter().position(|h| !h.is_empty());
        let mut result = match incomplete {
            Some(b) => Err(Error::internal(format!(
                "gradient bucket {b} never became final"
            ))),
            None => Ok(()),
        };
        let mut back: Held<Buf> = self.held.drain(..).flatten().collect();
        for w in self.workers {
            let (done, r) = w.join().unwrap_or_else(|_| {
                let panicked = Err(Error::internal("a communication thread panicked"));
                (Vec::new(), panicked)
            });
            back.extend(done);
            result = result.and(r);
        }
        let scale = if result.is_ok() { scale } else { 1.0 };
        for (p, g) in back {
            exec.put_grad(p, g, scale)?;
        }
        result
    }
}
