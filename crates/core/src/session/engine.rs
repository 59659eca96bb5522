//! What a trainer runs on: each virtual device's backend, and, where the engine has them,
//! device groups that move tensors in the backend's own memory (a GPU group's
//! device-to-device copies, NCCL). The host communicators are always made (they carry the
//! step's scalars, the initial broadcast, tensor parallelism and ZeRO); the device groups
//! take over what moves the bulk of the bytes: pipeline sends and the fused gradient
//! all-reduce.

use super::compile::BackendFactory;
use super::layout::Layout;
use super::options::TrainerOptions;
use crate::collectives::{DeviceCommunicator, DeviceGroupFactory, GroupSpec};
use crate::config::ZeroLevel;
use crate::error::{Error, Result};
use crate::exec::Backend;
use crate::process::ProcessWorld;
use std::collections::BTreeMap;
use std::time::Duration;

/// A backend factory and, optionally, the engine's maker of device groups.
pub struct Engine<'a, B: Backend> {
    pub backend: &'a BackendFactory<'a, B>,
    pub groups: Option<&'a DeviceGroupFactory<'a, B::Buffer>>,
}

/// One device's device-memory groups (see `Layout::communicators` for the host ones).
pub(super) struct DeviceGroups<Buf> {
    /// The world group, for pipeline sends (None without pipeline stages).
    pub world: Option<Box<dyn DeviceCommunicator<Buf>>>,
    /// Gradient channels to the same position in the other replicas (empty: host reduction).
    pub dp: Vec<Box<dyn DeviceCommunicator<Buf>>>,
}

impl<Buf> DeviceGroups<Buf> {
    fn none() -> DeviceGroups<Buf> {
        DeviceGroups {
            world: None,
            dp: Vec::new(),
        }
    }
}

/// Whether gradients can be reduced in device memory: fp16 compression encodes on the host,
/// and ZeRO reduce-scatters into host-visible shards, so both keep the host reduction.
fn device_gradients(options: &TrainerOptions) -> bool {
    !options.config.communication.fp16 && options.config.zero.level == ZeroLevel::Off
}

/// Every hosted device's device groups (indexed like `hosted`), made by `factory` for the
/// same groups `Layout::communicators` makes: the world group when there are pipeline stages,
/// then per gradient channel one group per stage position. Every process makes every group in
/// the same order (`world` gives each its store prefix). Without a factory, or under the
/// cooperative executor (one thread drives every device, so nothing may block), none.
pub(super) fn device_groups<Buf>(
    layout: &Layout,
    options: &TrainerOptions,
    factory: Option<&DeviceGroupFactory<'_, Buf>>,
    world: Option<&ProcessWorld>,
    hosted: &[usize],
    cooperative: bool,
) -> Result<Vec<DeviceGroups<Buf>>> {
    let mut out: Vec<DeviceGroups<Buf>> = hosted.iter().map(|_| DeviceGroups::none()).collect();
    let Some(factory) = factory.filter(|_| !cooperative) else {
        return Ok(out);
    };
    let n = layout.ranks * layout.replicas * layout.tp;
    let timeout = Duration::from_secs(options.config.communication.timeout_s as u64);
    // Handles for this process's members of the group over `ranks`, by global rank.
    let make = |ranks: &[usize], purpose: &'static str| -> Result<Vec<_>> {
        let members: Vec<usize> = (0..ranks.len())
            .filter(|&i| hosted.contains(&ranks[i]))
            .collect();
        let spec = GroupSpec {
            ranks,
            members: &members,
            purpose,
            timeout,
            store: world.map(|w| (w.store(), w.group_key())),
        };
        let handles = factory(&spec)?;
        if let Some(h) = &handles
            && h.len() != members.len()
        {
            return Err(Error::internal(format!(
                "the {purpose} device group made {} handles for {} members",
                h.len(),
                members.len()
            )));
        }
        // A member's handle goes to the position of its rank among the hosted ones.
        let local = |rank: usize| hosted.iter().position(|&h| h == rank).unwrap_or(0);
        Ok(members
            .iter()
            .map(|&i| local(ranks[i]))
            .zip(handles.into_iter().flatten())
            .collect())
    };
    if layout.ranks > 1 {
        let all: Vec<usize> = (0..n).collect();
        for (local, c) in make(&all, "pipeline")? {
            out[local].world = Some(c);
        }
    }
    if layout.replicas > 1 && device_gradients(options) {
        for _ in 0..layout.dp_channels(options) {
            for group in layout.dp_groups() {
                for (local, c) in make(&group, "gradients")? {
                    out[local].dp.push(c);
                }
            }
        }
    }
    Ok(out)
}

impl<B: Backend> super::Trainer<B> {
    /// What moves tensors between this process's devices, by purpose: `gradients` and
    /// `pipeline` name the engine (`host` for the host communicators, else the device
    /// engine's name: `gpu-group`, `nccl`); absent when the layout has no such exchange.
    pub fn exchange_engines(&self) -> BTreeMap<&'static str, &'static str> {
        let mut out = BTreeMap::new();
        for d in &self.devices {
            if !d.dp.is_empty() {
                let engine = d.device.dp.first().map_or("host", |c| c.engine());
                out.insert("gradients", engine);
            }
            if d.world.is_some() && self.layout.ranks > 1 {
                let engine = d.device.world.as_ref().map_or("host", |c| c.engine());
                out.insert("pipeline", engine);
            }
        }
        out
    }
}
