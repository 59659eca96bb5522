//! Element types: f32 and i32, and the two 16-bit floats mixed precision stores activations in
//! (bf16: f32's range with 8 bits of mantissa; f16: IEEE half, 5-bit exponent).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
    BF16,
    F16,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::BF16 | DType::F16 => 2,
        }
    }

    /// A 16-bit float type (mixed precision's storage).
    pub fn is_half(self) -> bool {
        matches!(self, DType::BF16 | DType::F16)
    }

    /// A floating-point type (kernels accept any of them, accumulating in f32).
    pub fn is_float(self) -> bool {
        self != DType::I32
    }

    pub fn parse(s: &str) -> Option<DType> {
        match s {
            "f32" | "F32" | "float32" => Some(DType::F32),
            "i32" | "I32" | "int32" => Some(DType::I32),
            "bf16" | "BF16" | "bfloat16" => Some(DType::BF16),
            "f16" | "F16" | "fp16" | "float16" => Some(DType::F16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
