//! The four C math functions the program calls — `exp`, `exp2`, `log2`
//! and `pow` (tokio's runtime statistics take a `pow`, the native-histogram
//! schema a `log2`, dependencies the others) — defined in the program
//! itself, from the `libm` crate (a port of musl's), instead of taken from
//! glibc's `libm.so.6`.
//!
//! With no symbol left for it to provide, the linker (`--as-needed`)
//! leaves `libm.so.6` out of the binary's dependencies, and the dynamic
//! linker never maps it: 0.65 MiB of resident pages in an idle agent
//! (docs/performance.md, "Edge footprint"), most of them the symbol
//! tables it reads to bind every symbol at start-up.
//!
//! # Audit
//!
//! `#[no_mangle]` is the only `unsafe` here: two definitions of one C
//! symbol would be undefined behaviour. The binary is the only definition
//! it links (glibc's is in a shared library the binary no longer loads,
//! and the static musl build, whose C library defines them, does not
//! compile this module). Each function is total: every `f64`, NaN and
//! infinities included, has a result, as C99 specifies.
#![deny(rust_2018_idioms)]

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod exported {
    /// C99 `exp`.
    #[no_mangle]
    pub extern "C" fn exp(x: f64) -> f64 {
        libm::exp(x)
    }

    /// C99 `exp2`.
    #[no_mangle]
    pub extern "C" fn exp2(x: f64) -> f64 {
        libm::exp2(x)
    }

    /// C99 `log2`.
    #[no_mangle]
    pub extern "C" fn log2(x: f64) -> f64 {
        libm::log2(x)
    }

    /// C99 `pow`.
    #[no_mangle]
    pub extern "C" fn pow(x: f64, y: f64) -> f64 {
        libm::pow(x, y)
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box as opaque;

    // `f64`'s methods call the C functions (on glibc, the definitions
    // above); `opaque` keeps the compiler from folding the calls away.
    #[test]
    fn values_c99_fixes() {
        assert_eq!(opaque(2f64).powf(opaque(10.0)), 1024.0);
        assert_eq!(opaque(1f64).powf(f64::NAN), 1.0);
        assert_eq!(opaque(0f64).exp(), 1.0);
        assert_eq!(opaque(f64::INFINITY).exp(), f64::INFINITY);
        assert_eq!(opaque(f64::NEG_INFINITY).exp(), 0.0);
        assert_eq!(opaque(10f64).exp2(), 1024.0);
        assert!(opaque(f64::NAN).exp2().is_nan());
        assert_eq!(opaque(1024f64).log2(), 10.0);
        assert_eq!(opaque(0.5f64).log2(), -1.0);
        assert_eq!(opaque(0f64).log2(), f64::NEG_INFINITY);
        assert!(opaque(-1f64).log2().is_nan());
    }

    #[test]
    fn within_an_ulp() {
        let e = opaque(1f64).exp();
        assert!((e - std::f64::consts::E).abs() <= f64::EPSILON * e);
        let ln2 = std::f64::consts::LN_2;
        assert!((opaque(std::f64::consts::E).log2() - 1.0 / ln2).abs() <= 2.0 * f64::EPSILON);
        let p = opaque(0.9f64).powf(opaque(37.0));
        assert!((p - 0.020_275_559_590_445_275).abs() <= 0.020_3 * f64::EPSILON);
    }
}
