//! Runtime instruction-set dispatch for the hot loops.
//!
//! The crate is compiled for baseline x86-64 (SSE2), so LLVM vectorises our loops 4 wide, while
//! the machines we run on mostly have AVX2 or AVX-512, where the same loops run 8 or 16 wide
//! (GELU, softmax and cross-entropy get 2-4x faster). `simd_fn!` defines a function whose body
//! is compiled three times, for AVX-512, AVX2 and the baseline, and picks one per call from the
//! CPU's features (cached by std, so a check is two atomic loads).
//!
//! The body is an `#[inline(always)]` inner function called from `#[target_feature]` wrappers:
//! forced inlining is what makes LLVM compile it with the wider registers (a closure handed to
//! a dispatcher is not reliably inlined, and then silently stays SSE2). Keep the loops inside
//! a `simd_fn!` body free of calls that are not inline(always) for the same reason.
//!
//! Results do not depend on the path taken: Rust never contracts a*b+c into an FMA or
//! reassociates float sums, and our reductions fix their lane order in the source, so every
//! path rounds the same operations in the same order.

/// `simd_fn! { /// docs \n pub(super) fn name(args) -> R { body } }`: see the module docs.
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(super) use simd_fn;

#[cfg(test)]
mod tests {
    simd_fn! {
        fn dot3(a: &[f32], b: &[f32]) -> f32 {
            let mut s = 0.0;
            for (x, y) in a.iter().zip(b) {
                s += x * y;
            }
            s
        }
    }

    #[test]
    fn dispatched_function_computes_the_body() {
        assert_eq!(dot3(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
    }
}
