//! `e^x` over a slice, for softmax and SiLU: Cephes' `expf` (range reduction by n·ln 2 in two
//! parts, a degree-5 polynomial on [−ln 2 / 2, ln 2 / 2], scaling by 2ⁿ through the exponent
//! bits), within 2 ulp of the true value on the whole f32 range. Every step is an FMA or an
//! exactly rounded operation, so the scalar twin here and the SIMD versions (`x86/exp.rs`) give
//! the same bits. Inputs below −87.336 give 0, above 88.722 give +∞, NaN stays NaN.

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, e^x is under the smallest normal f32: the result is 0.
pub(crate) const MIN_X: f32 = -87.336_55;
/// Above this, e^x overflows: the result is +∞.
pub(crate) const MAX_X: f32 = 88.722_83;
pub(crate) const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// `e^x` for one value (the scalar twin).
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < MIN_X {
        return 0.0;
    }
    if x > MAX_X {
        return f32::INFINITY;
    }
    let n = x.mul_add(LOG2E, 0.5).floor();
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r);
    let z = r * r;
    let mut p = P[0];
    for c in &P[1..] {
        p = p.mul_add(r, *c);
    }
    let y = p.mul_add(z, r) + 1.0;
    // n ∈ [−126, 128] spans more than the normal exponents: scale by 2^(n − h) · 2^h,
    // h = ⌊n / 2⌋, both normal; the first product is exact.
    let n = n as i32;
    let h = n >> 1;
    y * pow2(n - h) * pow2(h)
}

/// 2^k for a normal exponent k.
#[inline]
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// `x ← e^x` elementwise.
pub fn exp_slice(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = exp(*v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_libm_everywhere_and_exact_at_edges() {
        let mut worst = 0f64;
        let mut x = -87.3f32;
        while x < 88.7 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_37;
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(MAX_X).is_finite() && exp(MIN_X) > 0.0);
    }
}
