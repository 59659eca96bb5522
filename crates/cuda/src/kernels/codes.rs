//! Op codes shared by the launches and the kernels, from one definition: an op's code is its
//! index in the core's `UnaryOp::ALL` / `BinaryOp::ALL` / `ReduceOp::ALL`. Every module's source
//! starts with them as `#define`s (`UNARY_GELU`, `BINARY_DIV`, `REDUCE_MAX`, ...), the kernels
//! switch on those names, and an unknown code traps (`default: __trap()`) rather than computing
//! some other op.

use weft_core::ir::{BinaryOp, ReduceOp, UnaryOp};

/// `x`'s index in `all`; -1 (which every kernel traps on) if the table lacks it.
fn index_in<T: PartialEq>(all: &[T], x: &T) -> i32 {
    all.iter()
        .position(|a| a == x)
        .and_then(|i| i32::try_from(i).ok())
        .unwrap_or(-1)
}

pub fn unary_code(u: UnaryOp) -> i32 {
    index_in(&UnaryOp::ALL, &u)
}

pub fn binary_code(b: BinaryOp) -> i32 {
    index_in(&BinaryOp::ALL, &b)
}

pub fn reduce_code(r: ReduceOp) -> i32 {
    index_in(&ReduceOp::ALL, &r)
}

/// The `#define`s every module's source starts with.
pub fn defines() -> String {
    let mut out = String::new();
    let mut define = |family: &str, name: &str, code: i32| {
        out.push_str(&format!(
            "#define {family}_{} {code}\n",
            name.to_uppercase()
        ));
    };
    UnaryOp::ALL
        .iter()
        .for_each(|&u| define("UNARY", u.name(), unary_code(u)));
    BinaryOp::ALL
        .iter()
        .for_each(|&b| define("BINARY", b.name(), binary_code(b)));
    ReduceOp::ALL
        .iter()
        .for_each(|&r| define("REDUCE", r.name(), reduce_code(r)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_table_positions_and_defines_name_them() {
        assert_eq!(unary_code(UnaryOp::Relu), 0);
        assert_eq!(unary_code(UnaryOp::Sqrt), 6);
        assert_eq!(binary_code(BinaryOp::Div), 3);
        assert_eq!(reduce_code(ReduceOp::Max), 2);
        let d = defines();
        assert!(d.contains("#define UNARY_GELU 1\n"), "{d}");
        assert!(d.contains("#define BINARY_SUB 1\n"), "{d}");
        assert!(d.contains("#define REDUCE_MEAN 1\n"), "{d}");
        assert_eq!(d.lines().count(), 7 + 4 + 3);
    }

    /// Every `case` label the kernels switch on is one of the generated names, and every
    /// generated name has its case: a new op without a kernel case fails here, not on the GPU.
    #[test]
    fn every_code_has_a_kernel_case_and_no_case_is_unknown() {
        let src = [include_str!("elementwise.cu"), include_str!("reduce.cu")].concat();
        let defined: Vec<String> = defines()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        for name in &defined {
            let uses = src.matches(&format!("case {name}:")).count();
            let want = if name.starts_with("UNARY_") { 2 } else { 1 };
            assert_eq!(uses, want, "kernel cases for {name}");
        }
        for case in src.split("case ").skip(1) {
            let label = case.split(':').next().unwrap_or_default();
            assert!(
                defined.iter().any(|d| d == label),
                "unknown case label {label}"
            );
        }
    }
}
