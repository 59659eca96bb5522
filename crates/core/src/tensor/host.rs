//! Host-side tensor data: owned (`HostData`) and borrowed (`HostView`) buffers of each `DType`,
//! what crosses in from `step()` and out to checkpoints and collectives.

use super::DType;

/// Host-side tensor data: what crosses in from `step()` and out to checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I32(Vec<i32>),
    /// bf16 bit patterns (mixed precision's activations).
    BF16(Vec<u16>),
    /// IEEE half bit patterns.
    F16(Vec<u16>),
}

impl HostData {
    pub fn zeros(dtype: DType, len: usize) -> HostData {
        match dtype {
            DType::F32 => HostData::F32(vec![0.0; len]),
            DType::I32 => HostData::I32(vec![0; len]),
            DType::BF16 => HostData::BF16(vec![0; len]),
            DType::F16 => HostData::F16(vec![0; len]),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::I32(_) => DType::I32,
            HostData::BF16(_) => DType::BF16,
            HostData::F16(_) => DType::F16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::I32(v) => v.len(),
            HostData::BF16(v) | HostData::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            HostData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match self {
            HostData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The bit patterns of a 16-bit float tensor.
    pub fn as_u16(&self) -> Option<&[u16]> {
        match self {
            HostData::BF16(v) | HostData::F16(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i32(&self) -> Option<&[i32]> {
        match self {
            HostData::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The values of a float tensor as f32 (16-bit ones widened): what crosses stages and
    /// reaches the caller.
    pub fn to_f32(&self) -> Option<std::borrow::Cow<'_, [f32]>> {
        super::half::widen(self)
    }
}

/// Borrowed host data: what a step reads its batch from, owned by the caller (a `HostData`, or
/// a JS typed array during a synchronous call) so that nothing is copied on the way in.
#[derive(Debug, Clone, Copy)]
pub enum HostView<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
    BF16(&'a [u16]),
    F16(&'a [u16]),
}

impl HostView<'_> {
    pub fn dtype(&self) -> DType {
        match self {
            HostView::F32(_) => DType::F32,
            HostView::I32(_) => DType::I32,
            HostView::BF16(_) => DType::BF16,
            HostView::F16(_) => DType::F16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostView::F32(v) => v.len(),
            HostView::I32(v) => v.len(),
            HostView::BF16(v) | HostView::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        match self {
            HostView::F32(v) => HostView::F32(&v[range]),
            HostView::I32(v) => HostView::I32(&v[range]),
            HostView::BF16(v) => HostView::BF16(&v[range]),
            HostView::F16(v) => HostView::F16(&v[range]),
        }
    }
}

/// Anything a batch tensor can be read from.
pub trait AsHostView {
    fn view(&self) -> HostView<'_>;
}

impl AsHostView for HostData {
    fn view(&self) -> HostView<'_> {
        match self {
            HostData::F32(v) => HostView::F32(v),
            HostData::I32(v) => HostView::I32(v),
            HostData::BF16(v) => HostView::BF16(v),
            HostData::F16(v) => HostView::F16(v),
        }
    }
}

impl AsHostView for HostView<'_> {
    fn view(&self) -> HostView<'_> {
        *self
    }
}
