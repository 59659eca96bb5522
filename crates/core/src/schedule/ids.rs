//! Index newtypes for schedules, so a stage is never passed where a micro-batch or rank is meant.

use std::fmt;

/// A pipeline stage: a contiguous slice of the model. With interleaving a rank hosts several
/// (virtual) stages; stage `s` feeds stage `s + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StageId(pub u32);

/// A micro-batch of the replica's batch, `0..M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroBatch(pub u32);

/// A pipeline rank: one device of one pipeline replica, `0..ranks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub u32);

macro_rules! index_newtype {
    ($t:ident) => {
        impl $t {
            /// The index as a `usize`, for indexing per-item vectors.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        // Bare numbers: the ids are composed into action text such as `SA0.3>1`.
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

index_newtype!(StageId);
index_newtype!(MicroBatch);
index_newtype!(Rank);

/// `usize` to `u32` for ids built from counts; counts beyond `u32` are a caller bug.
pub(crate) fn id32(n: usize) -> u32 {
    u32::try_from(n).expect("internal error: schedule index exceeds u32")
}
