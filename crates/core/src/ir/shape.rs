//! Static shapes with one symbolic dimension: the batch. `Dim::Batch(k)` means `k * B`, where
//! B is the (per-device, per-micro-batch) batch size resolved at compile time. Keeping the batch
//! symbolic lets one graph be resolved for any replica/micro-batch split (DESIGN.md, batch
//! semantics) instead of rebuilding the model per layout.

use crate::error::{Error, Result};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    /// `k * B`: a multiple of the symbolic batch size.
    Batch(usize),
}

impl Dim {
    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(n),
            Dim::Batch(_) => None,
        }
    }

    pub fn resolve(self, batch: usize) -> usize {
        match self {
            Dim::Fixed(n) => n,
            Dim::Batch(k) => k * batch,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Batch(1) => f.write_str("B"),
            Dim::Batch(k) => write!(f, "{k}B"),
        }
    }
}

/// Element count of a shape as `fixed * B^batch_power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numel {
    pub fixed: usize,
    pub batch_power: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    pub fn is_concrete(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Fixed(_)))
    }

    pub fn numel(&self) -> Numel {
        let mut n = Numel {
            fixed: 1,
            batch_power: 0,
        };
        for d in &self.0 {
            match *d {
                Dim::Fixed(x) => n.fixed *= x,
                Dim::Batch(k) => {
                    n.fixed *= k;
                    n.batch_power += 1;
                }
            }
        }
        n
    }

    /// Concrete dims; an error if the batch dimension has not been resolved.
    pub fn concrete(&self) -> Result<Vec<usize>> {
        self.0
            .iter()
            .map(|d| d.fixed())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::internal(format!("shape {self} still has a symbolic batch")))
    }

    /// Concrete dims, for code that runs only after batch resolution (executor, kernels).
    pub fn to_vec(&self) -> Vec<usize> {
        self.0.iter().map(|d| d.resolve(0)).collect()
    }

    pub fn resolve(&self, batch: usize) -> Shape {
        Shape(
            self.0
                .iter()
                .map(|d| Dim::Fixed(d.resolve(batch)))
                .collect(),
        )
    }

    /// Number of elements of a concrete shape (0 for a still-symbolic shape at batch 0).
    pub fn size(&self) -> usize {
        self.0.iter().map(|d| d.resolve(0)).product()
    }

    /// Normalise a possibly negative axis (`-1` = last) against this rank.
    pub fn axis(&self, op: &str, axis: i64) -> Result<usize> {
        let r = self.rank() as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r.max(1) || (r == 0) {
            return Err(Error::shape(
                op,
                format!("axis {axis} is out of range for shape {self}"),
            ));
        }
        Ok(a as usize)
    }

    /// Numpy broadcasting of two shapes.
    pub fn broadcast(op: &str, a: &Shape, b: &Shape) -> Result<Shape> {
        let r = a.rank().max(b.rank());
        let mut out = Vec::with_capacity(r);
        for i in 0..r {
            let da = if i + a.rank() >= r {
                a.0[i + a.rank() - r]
            } else {
                Dim::Fixed(1)
            };
            let db = if i + b.rank() >= r {
                b.0[i + b.rank() - r]
            } else {
                Dim::Fixed(1)
            };
            let d = match (da, db) {
                (x, y) if x == y => x,
                (Dim::Fixed(1), y) => y,
                (x, Dim::Fixed(1)) => x,
                _ => {
                    return Err(Error::shape(
                        op,
                        format!(
                            "shapes {a} and {b} do not broadcast (dimension {i}: {da} vs {db})"
                        ),
                    ));
                }
            };
            out.push(d);
        }
        Ok(Shape(out))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Row-major strides of a concrete shape.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy_rules() {
        let a = Shape(vec![Dim::Batch(1), Dim::Fixed(4), Dim::Fixed(1)]);
        let b = Shape::fixed(&[3]);
        assert_eq!(
            Shape::broadcast("add", &a, &b).unwrap().to_string(),
            "[B,4,3]"
        );
        let c = Shape::fixed(&[5]);
        let err = Shape::broadcast("add", &Shape::fixed(&[4]), &c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "add: shapes [4] and [5] do not broadcast (dimension 0: 4 vs 5)"
        );
    }

    #[test]
    fn numel_tracks_batch_power() {
        let s = Shape(vec![Dim::Batch(2), Dim::Fixed(3)]);
        assert_eq!(
            s.numel(),
            Numel {
                fixed: 6,
                batch_power: 1
            }
        );
        assert_eq!(s.resolve(4).to_vec(), vec![8, 3]);
    }
}
