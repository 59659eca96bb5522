//! The executor's persistent state: accumulated gradients (reduction across replicas,
//! clipping, the optimizer update), parameters and optimizer state (checkpoints).

use super::*;

impl<B: Backend> Executor<B> {
    /// Parameters this device owns that take a gradient, in the order their gradients become
    /// final in backward (reverse creation order): the order of all-reduce buckets.
    pub fn grad_order(&self) -> Vec<(NodeId, usize)> {
        let mut ps: Vec<NodeId> = self
            .graph
            .grads
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| self.params[p.index()].is_some())
            .collect();
        ps.sort();
        ps.dedup();
        ps.reverse();
        ps.into_iter().map(|p| (p, self.grad_len(p))).collect()
    }

    /// Set a parameter's gradient to `values * scale` (reduced elsewhere) over `range`: the
    /// whole parameter overwrites the accumulated gradient; a part of it (ZeRO v1: this
    /// replica's shard) replaces it with a buffer of just that part.
    pub fn write_grad_scaled(
        &mut self,
        param: NodeId,
        range: std::ops::Range<usize>,
        values: &[f32],
        scale: f32,
    ) -> Result<()> {
        let whole = range.len() == self.grad_len(param);
        let mut g = match self.grads[param.index()].take() {
            Some(g) if whole => g,
            // A shard, or a whole gradient already freed into its bucket (ZeRO v1).
            held => {
                if let Some(g) = held {
                    self.grads[param.index()] = Some(g);
                    self.release_grad(param);
                }
                let f32 = crate::ir::DType::F32;
                if !whole {
                    self.shard_grads.insert(param);
                }
                self.pool
                    .take(&self.backend, Category::Gradients, f32, range.len())?
            }
        };
        let written = self.write_f32(&mut g, range.len(), |d| {
            d.iter_mut().zip(values).for_each(|(d, s)| *d = s * scale);
            Ok(())
        });
        self.grads[param.index()] = Some(g);
        written
    }

    /// Give a final gradient's buffer to a device reducer (`GradSink::Device`); it stays
    /// counted as live gradient memory until `put_grad` returns it.
    pub(super) fn hand_over(
        &mut self,
        param: NodeId,
        take: &mut dyn FnMut(NodeId, B::Buffer) -> Result<()>,
    ) -> Result<()> {
        let g = self.grads[param.index()]
            .take()
            .ok_or_else(|| Error::internal(format!("{param} has no gradient to hand over")))?;
        take(param, g)
    }

    /// Every accumulated gradient handed over, in `grad_order` (a device reduction started
    /// after backward is fed as one overlapped with it).
    pub fn hand_over_all(
        &mut self,
        take: &mut dyn FnMut(NodeId, B::Buffer) -> Result<()>,
    ) -> Result<()> {
        for (p, _) in self.grad_order() {
            if self.grads[p.index()].is_some() {
                self.hand_over(p, take)?;
            }
        }
        Ok(())
    }

    /// A handed-over gradient comes back, reduced; it is multiplied by `scale` here (the same
    /// one f32 product per element as `write_grad_scaled`).
    pub fn put_grad(&mut self, param: NodeId, mut grad: B::Buffer, scale: f32) -> Result<()> {
        if scale != 1.0 {
            self.backend.scale_inplace(&mut grad, scale)?;
        }
        self.grads[param.index()] = Some(grad);
        Ok(())
    }

    /// Free a parameter's gradient (ZeRO v1: once it is in its bucket, or not this replica's).
    pub fn release_grad(&mut self, param: NodeId) {
        if let Some(g) = self.take_grad(param) {
            let len = g.1;
            self.pool
                .give(Category::Gradients, crate::ir::DType::F32, len, g.0);
        }
    }

    /// A parameter's gradient buffer and its length (the owned range for a ZeRO v1 shard).
    fn take_grad(&mut self, param: NodeId) -> Option<(B::Buffer, usize)> {
        let g = self.grads[param.index()].take()?;
        let len = if self.shard_grads.remove(&param) {
            self.owned_range(param).len()
        } else {
            self.grad_len(param)
        };
        Some((g, len))
    }

    /// ZeRO v1: free each gradient as soon as the reduction hook has copied it.
    pub fn set_release_notified(&mut self) {
        self.release_notified = true;
    }

    /// Call `hook(param, gradient)` for every accumulated gradient, in `grad_order` (how a
    /// reduction started after backward is fed the same way as one overlapped with it).
    pub fn each_grad(&self, hook: &mut GradHook<'_>) -> Result<()> {
        for (p, _) in self.grad_order() {
            if self.grads[p.index()].is_some() {
                self.notify(p, hook)?;
            }
        }
        Ok(())
    }

    fn grad_len(&self, p: NodeId) -> usize {
        numel(&self.dims[p.index()])
    }

    /// Make every replica's parameters equal replica 0's (`group` holds this stage's replicas).
    pub fn broadcast_params(&mut self, group: &dyn Communicator) -> Result<()> {
        for (id, _) in self.graph.parameters() {
            let Some(buf) = self.params[id.index()].as_ref() else {
                continue;
            };
            let mut data = self.backend.download(buf)?;
            let v = data
                .as_f32_mut()
                .ok_or_else(|| Error::internal("f32 parameter"))?;
            group.broadcast(v, 0)?;
            self.params[id.index()] = Some(self.backend.upload(&data)?);
        }
        Ok(())
    }

    /// Sum of squares of the accumulated gradients (this device's share of the global norm).
    pub fn grad_sum_squares(&self) -> Result<f64> {
        self.grad_sum_squares_of(|_| true)
    }

    /// `grad_sum_squares` over the parameters `keep` selects (a tensor-parallel device other
    /// than the first counts only its shards: the replicated parameters are the first's too).
    pub fn grad_sum_squares_of(&self, keep: impl Fn(NodeId) -> bool) -> Result<f64> {
        let grads: Vec<&B::Buffer> = self
            .grad_params()
            .into_iter()
            .filter(|&p| keep(p))
            .filter_map(|p| self.grads[p.index()].as_ref())
            .collect();
        self.backend.sum_squares_all(&grads)
    }

    /// Parameter nodes with an accumulated gradient.
    fn grad_params(&self) -> Vec<NodeId> {
        self.graph
            .grads
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| self.grads[p.index()].is_some())
            .collect()
    }

    /// The accumulated gradient of a parameter, if the last step produced one.
    pub fn read_grad(&self, name: &str) -> Result<Option<HostData>> {
        let id = self.param_id(name)?;
        self.grads[id.index()]
            .as_ref()
            .map(|g| self.backend.download(g))
            .transpose()
    }

    pub fn scale_grads(&mut self, factor: f32) -> Result<()> {
        for p in self.grad_params() {
            self.backend
                .scale_inplace(self.grads[p.index()].as_mut().expect("checked"), factor)?;
        }
        Ok(())
    }

    /// Apply `rule_for(param name)` to every parameter with a gradient, then drop the gradients.
    pub fn apply(&mut self, step: u64, rule_for: &dyn Fn(&str) -> UpdateRule) -> Result<()> {
        self.apply_where(step, rule_for, &|_| true)
    }

    /// `apply` for the parameters `which` selects (one group of a grouped apply).
    pub fn apply_where(
        &mut self,
        step: u64,
        rule_for: &dyn Fn(&str) -> UpdateRule,
        which: &dyn Fn(NodeId) -> bool,
    ) -> Result<()> {
        for p in self.grad_params().into_iter().filter(|&p| which(p)) {
            let name = self.param_name(p).to_string();
            let rule = rule_for(&name);
            let (range, at) = (self.owned_range(p), self.update_range(p));
            let (grad, len) = self.take_grad(p).expect("checked");
            if !range.is_empty() {
                while self.state[p.index()].len() < rule.state_count() {
                    let b = self.backend.alloc(crate::ir::DType::F32, range.len())?;
                    let home = self.home(Category::OptimizerState);
                    self.pool.adopt(home, crate::ir::DType::F32, range.len());
                    self.state[p.index()].push(b);
                }
                let param = self.params[p.index()].as_mut().ok_or_else(|| {
                    Error::internal("gradient of a parameter this stage does not own")
                })?;
                let state = &mut self.state[p.index()];
                self.backend.update(&rule, step, param, &grad, state, at)?;
            }
            self.pool
                .give(Category::Gradients, crate::ir::DType::F32, len, grad);
        }
        Ok(())
    }

    /// ZeRO: from now on this executor updates, and keeps optimizer state for, only `owned`'s
    /// range of each parameter (a parameter absent from it not at all).
    pub fn set_owned(&mut self, owned: HashMap<NodeId, std::ops::Range<usize>>) {
        self.owned = Some(owned);
    }

    /// The range of a parameter this executor updates.
    pub(super) fn owned_range(&self, p: NodeId) -> std::ops::Range<usize> {
        match &self.owned {
            Some(owned) => owned.get(&p).cloned().unwrap_or(0..0),
            None => 0..numel(&self.dims[p.index()]),
        }
    }

    /// The range of a parameter's optimizer state this executor holds (`read_state`).
    pub fn state_range(&self, name: &str) -> Result<std::ops::Range<usize>> {
        Ok(self.owned_range(self.param_id(name)?))
    }

    /// Elements of a parameter as this device's graph has it (a tensor-parallel shard's).
    pub fn param_len(&self, name: &str) -> Result<usize> {
        Ok(numel(&self.dims[self.param_id(name)?.index()]))
    }

    /// Every parameter of this stage as host f32, in place, by node (ZeRO's gather of updated
    /// shards writes into them directly).
    pub fn params_host_mut(&mut self) -> Result<HashMap<NodeId, &mut [f32]>> {
        let backend = &self.backend;
        let mut out = HashMap::new();
        for (i, buf) in self.params.iter_mut().enumerate() {
            if let Some(buf) = buf {
                let host = backend
                    .host_f32_mut(buf)
                    .ok_or_else(|| Error::Unsupported {
                        feature: "zero.level".into(),
                        message: format!(
                            "ZeRO needs host-visible parameters on {}",
                            backend.name()
                        ),
                    })?;
                out.insert(NodeId(i as u32), host);
            }
        }
        Ok(out)
    }

    /// Drop accumulated gradients without applying them (a skipped step).
    pub fn discard_grads(&mut self) {
        for p in self.grad_params() {
            self.release_grad(p);
        }
    }

    fn param_name(&self, id: NodeId) -> &str {
        match &self.graph.node(id).op {
            Op::Parameter { name, .. } => name,
            _ => "",
        }
    }

    pub(super) fn param_id(&self, name: &str) -> Result<NodeId> {
        self.graph
            .parameters()
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id)
            .ok_or_else(|| Error::Checkpoint {
                path: String::new(),
                message: format!("no parameter '{name}'"),
            })
    }

    /// (name, shape) of every parameter this device owns, in creation order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.graph
            .parameters()
            .into_iter()
            .filter(|(id, _)| self.params[id.index()].is_some())
            .map(|(id, n)| (n.to_string(), self.dims[id.index()].clone()))
            .collect()
    }

    /// The parameter as this executor keeps it: whole, or under ZeRO v2 this replica's piece
    /// (`param_pieces` says which).
    pub fn read_parameter(&self, name: &str) -> Result<HostData> {
        let id = self.param_id(name)?;
        let buf = self.params[id.index()]
            .as_ref()
            .ok_or_else(|| Error::internal(format!("parameter '{name}' is not on this device")))?;
        self.backend.download(buf)
    }

    pub fn write_parameter(&mut self, name: &str, data: &HostData) -> Result<()> {
        let id = self.param_id(name)?;
        if data.dtype() != crate::ir::DType::F32 || data.len() != numel(&self.dims[id.index()]) {
            return Err(Error::internal(format!("parameter '{name}' size mismatch")));
        }
        if self.params[id.index()].is_none() {
            return Err(Error::internal(format!(
                "parameter '{name}' is not on this device"
            )));
        }
        // ZeRO v2 keeps its piece of the whole parameter (a checkpoint re-split on load).
        let buf = match (self.own_piece(id), data.as_f32()) {
            (Some(own), Some(v)) => self.backend.upload(&HostData::F32(v[own].to_vec()))?,
            _ => self.backend.upload(data)?,
        };
        self.params[id.index()] = Some(buf);
        Ok(())
    }

    /// Optimizer state buffers of a parameter (empty before its first update).
    pub fn read_state(&self, name: &str) -> Result<Vec<HostData>> {
        let id = self.param_id(name)?;
        self.state[id.index()]
            .iter()
            .map(|b| self.backend.download(b))
            .collect()
    }

    /// Restore a parameter's whole optimizer state (each buffer the parameter's full size);
    /// under ZeRO only the owned range is kept.
    pub fn write_state(&mut self, name: &str, state: &[HostData]) -> Result<()> {
        let id = self.param_id(name)?;
        let len = numel(&self.dims[id.index()]);
        let range = self.owned_range(id);
        let mut bufs = Vec::new();
        for s in state {
            let data = match s.as_f32() {
                Some(v) if v.len() == len => v,
                _ => {
                    return Err(Error::internal(format!(
                        "state of '{name}' has the wrong size"
                    )));
                }
            };
            if !range.is_empty() {
                bufs.push(
                    self.backend
                        .upload(&HostData::F32(data[range.clone()].to_vec()))?,
                );
            }
        }
        let held = self.state[id.index()].len();
        let home = self.home(Category::OptimizerState);
        for _ in held..bufs.len() {
            self.pool.adopt(home, crate::ir::DType::F32, range.len());
        }
        for _ in bufs.len()..held {
            self.pool
                .drop_buffer(home, crate::ir::DType::F32, range.len());
        }
        self.state[id.index()] = bufs;
        Ok(())
    }
}
