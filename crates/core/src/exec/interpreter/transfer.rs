//! Moving a buffer's values between the device and host f32 slices: in place where the
//! device's memory is the host's, through download/upload elsewhere, widened or rounded where
//! the buffer is 16-bit (values cross stages and replicas as f32).

use super::*;

impl<B: Backend> Executor<B> {
    /// Hand a float buffer's values to `f` as f32: in place on host-memory devices, through a
    /// download elsewhere (and widened when 16-bit: values cross stages as f32).
    pub(super) fn read_f32<R>(
        &self,
        buf: &B::Buffer,
        f: impl FnOnce(&[f32]) -> Result<R>,
    ) -> Result<R> {
        match self.backend.host_f32(buf) {
            Some(host) => f(host),
            None => {
                let data = self.backend.download(buf)?;
                f(&data.to_f32().ok_or_else(|| {
                    Error::internal("only float tensors cross stages and replicas")
                })?)
            }
        }
    }

    /// Let `f` fill an f32 buffer: in place on host-memory devices, through an upload elsewhere.
    pub(crate) fn write_f32(
        &self,
        buf: &mut B::Buffer,
        len: usize,
        f: impl FnOnce(&mut [f32]) -> Result<()>,
    ) -> Result<()> {
        if let Some(host) = self.backend.host_f32_mut(buf) {
            return f(host);
        }
        let mut host = vec![0.0f32; len];
        f(&mut host)?;
        self.backend.write(buf, HostView::F32(&host))
    }

    /// `write_f32` into a buffer of any float type: 16-bit ones are filled through f32 and
    /// rounded.
    pub(super) fn write_values(
        &self,
        buf: &mut B::Buffer,
        dtype: DType,
        len: usize,
        f: impl FnOnce(&mut [f32]) -> Result<()>,
    ) -> Result<()> {
        if dtype == DType::F32 {
            return self.write_f32(buf, len, f);
        }
        let mut wide = vec![0.0f32; len];
        f(&mut wide)?;
        let mut data = HostData::zeros(dtype, len);
        crate::tensor::half::narrow_into(&wide, &mut data);
        self.backend.write(buf, data.view())
    }
}

/// A message a program waits for and that has not arrived: the cooperative executor's reason
/// not to start a work item yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awaited {
    pub node: NodeId,
    pub from_stage: usize,
    /// The sender's rank in the link's communicator.
    pub from_rank: usize,
}

impl<B: Backend> Executor<B> {
    /// The first `recv` of `kind`'s program for micro-batch `mb` whose message is not queued
    /// yet; None when every receive of the program would complete without waiting.
    pub fn first_awaited(
        &self,
        kind: ProgramKind,
        mb: usize,
        link: Option<&Link<'_, B::Buffer>>,
    ) -> Result<Option<Awaited>> {
        for action in self.program.actions(kind) {
            let Action::Recv { node, from_stage } = *action else {
                continue;
            };
            let link =
                link.ok_or_else(|| Error::internal("a cross-stage transfer needs a communicator"))?;
            let from_rank = link.rank_of_stage[from_stage];
            if !link.comm.has_message(from_rank, tag(mb, node))? {
                return Ok(Some(Awaited {
                    node,
                    from_stage,
                    from_rank,
                }));
            }
        }
        Ok(None)
    }
}
