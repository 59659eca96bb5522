//! Element types. f32 and i32 today; bf16/f16 arrive with mixed precision.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        match s {
            "f32" | "F32" | "float32" => Some(DType::F32),
            "i32" | "I32" | "int32" => Some(DType::I32),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
