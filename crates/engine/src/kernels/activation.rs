//! Gate activations over one group's eight outputs, branch-free so the compiler turns them
//! into vector instructions, both on an `exp` accurate to about one unit in the last place.
//!
//! GELU through libm's `tanhf` took a sixth of Gemma 3's prompt time. It is computed here as
//! `x·σ(2u)`, which equals `0.5·x·(1 + tanh(u))` exactly in real arithmetic (and avoids the
//! cancellation of `1 + tanh(u)` for negative x). SiLU, `x / (1 + e^−x)`, took 6% of the
//! default model's prompt time through libm's `expf`, which it matched bit for bit.

use super::packed::G;

/// The constants of [`exp`], shared with the attention kernel's vector form of it.
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that n·LN2_HI is exact for the n that occur.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2^23 rounds to the nearest integer without a libm call.
pub(crate) const ROUND: f32 = 12_582_912.0;
/// Cephes' single-precision coefficients of e^r, highest degree first.
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `e^x` lane by lane: `x = n·ln2 + r` with |r| ≤ ln2/2, a degree-7 polynomial for `e^r`
/// (Cephes' single-precision coefficients) and `2^n` built in the exponent bits.
/// Inputs are clamped to [-87, 88], inside the normal range, so the result never overflows
/// to infinity or underflows to a subnormal; NaN stays NaN.
pub(crate) fn exp(x: [f32; G]) -> [f32; G] {
    const P: [f32; 6] = EXP_POLY;
    std::array::from_fn(|i| {
        let x = x[i].clamp(-87.0, 88.0);
        let n = (x * LOG2E + ROUND) - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = P[1..].iter().fold(P[0], |p, &c| p * r + c);
        let e = p * (r * r) + r + 1.0;
        e * f32::from_bits(((n as i32 + 127) as u32) << 23)
    })
}

/// SiLU, `x·σ(x)` (Llama, Mistral, Qwen2).
pub(crate) fn silu(x: &[f32; G]) -> [f32; G] {
    let e = exp(x.map(|x| -x));
    std::array::from_fn(|i| x[i] / (1.0 + e[i]))
}

/// GELU with the tanh approximation (Gemma's `gelu_pytorch_tanh`).
pub(crate) fn gelu_tanh(x: &[f32; G]) -> [f32; G] {
    // 2·√(2/π): σ(2u) = (1 + tanh(u)) / 2.
    const TWO_SQRT_TWO_OVER_PI: f32 = 1.595_769;
    let minus_2u =
        std::array::from_fn(|i| -TWO_SQRT_TWO_OVER_PI * x[i] * (1.0 + 0.044_715 * x[i] * x[i]));
    let e = exp(minus_2u);
    std::array::from_fn(|i| x[i] / (1.0 + e[i]))
}

/// Gemma 2's soft cap, `cap·tanh(x/cap)`, over a whole row of logits in place: libm's `tanhf`
/// over a 256k-entry vocabulary took about 2 ms of each of Gemma-2-2B's decoding steps.
pub(crate) fn softcap(xs: &mut [f32], cap: f32) {
    for c in xs.chunks_mut(G) {
        let mut u = [0.0; G];
        for (u, &x) in u.iter_mut().zip(&*c) {
            *u = x / cap;
        }
        for (x, t) in c.iter_mut().zip(tanh(u)) {
            *x = cap * t;
        }
    }
}

/// `tanh(u)` lane by lane: `(1 − e^−2|u|) / (1 + e^−2|u|)` with u's sign, and below |u| = 1/8,
/// where that subtraction loses bits, the series `u − u³/3 + 2u⁵/15 − 17u⁷/315` (the next
/// term is under 2^−29 of u there).
fn tanh(u: [f32; G]) -> [f32; G] {
    let e = exp(u.map(|u| -2.0 * u.abs()));
    std::array::from_fn(|i| {
        let (a, u2) = (u[i].abs(), u[i] * u[i]);
        let series = a * (1.0 + u2 * (-1.0 / 3.0 + u2 * (2.0 / 15.0 + u2 * (-17.0 / 315.0))));
        let t = if a < 0.125 {
            series
        } else {
            (1.0 - e[i]) / (1.0 + e[i])
        };
        t.copysign(u[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values across the whole range an activation sees, and the edges.
    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 * 1e-3).collect();
        v.extend((-400..=400).map(|i| i as f32 * 0.25));
        v.extend([0.0, -0.0, 1e-30, -1e-30, 87.0, -87.0, 88.0, 1e6, -1e6]);
        while !v.len().is_multiple_of(G) {
            v.push(0.5);
        }
        v
    }

    fn map(v: &[f32], f: fn([f32; G]) -> [f32; G]) -> Vec<f32> {
        v.chunks(G)
            .flat_map(|c| f(c.try_into().expect("a group")))
            .collect()
    }

    #[test]
    fn softcap_matches_tanh_in_f64() {
        let mut v = inputs();
        let x = v.clone();
        softcap(&mut v[..x.len() - 3], 30.0);
        for (&x, &got) in x.iter().zip(&v).take(x.len() - 3) {
            let want = 30.0 * (x as f64 / 30.0).tanh();
            // Within four units in the last place of the result (the cap's division and
            // multiplication round too).
            let ulp = f32::EPSILON as f64 * want.abs().max(f32::MIN_POSITIVE as f64);
            assert!(
                (got as f64 - want).abs() <= 4.0 * ulp,
                "{x}: {got} vs {want}"
            );
        }
        // A row whose length is no multiple of a group: the last three are left alone.
        assert_eq!(v[x.len() - 3..], x[x.len() - 3..]);
    }

    #[test]
    fn exp_within_two_ulp() {
        let xs: Vec<f32> = inputs().into_iter().filter(|x| x.abs() <= 87.0).collect();
        let xs = &xs[..xs.len() / G * G];
        for (x, got) in xs.iter().zip(map(xs, exp)) {
            let want = (*x as f64).exp();
            let ulp = (want as f32).to_bits().abs_diff(got.to_bits());
            assert!(ulp <= 2, "exp({x}) = {got}, want {want} ({ulp} ulp)");
        }
    }

    #[test]
    fn exp_edges() {
        let got = exp([f32::NAN, 1000.0, -1000.0, 0.0, 1.0, -1.0, 88.0, -87.0]);
        assert!(got[0].is_nan());
        assert!(got[1].is_finite() && got[1] > 1e38, "clamped, not infinite");
        assert!(got[2] > 0.0 && got[2].is_normal(), "clamped, not subnormal");
        assert_eq!(got[3], 1.0);
        assert!((got[4] - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
    }

    #[test]
    fn silu_matches_the_formula_in_f64() {
        let xs = inputs();
        for (x, got) in xs.iter().zip(map(&xs, |v| silu(&v))) {
            let x64 = *x as f64;
            let want = x64 / (1.0 + (-x64).exp());
            // exp's two units, the sum's and the quotient's rounding, relative to the value;
            // below −87 exp's clamp leaves x·e^−88 where the exact value is nearer 0.
            let tol = if x64 < -87.0 {
                x64.abs() * 1e-38
            } else {
                5.0 * f32::EPSILON as f64 * want.abs()
            };
            assert!(
                (got as f64 - want).abs() <= tol,
                "silu({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_matches_the_tanh_formula_in_f64() {
        let xs = inputs();
        let got: Vec<f32> = xs
            .chunks(G)
            .flat_map(|c| gelu_tanh(c.try_into().expect("a group")))
            .collect();
        for (x, got) in xs.iter().zip(got) {
            // x·σ(2u) in f64, the same value as 0.5·x·(1 + tanh u) without its cancellation.
            let x64 = *x as f64;
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
            let want = x64 / (1.0 + (-2.0 * u).exp());
            // Within two units of rounding of the input everywhere (candle's f32 tanh formula
            // is within one: both round u), and of the value itself where x ≥ 0, where
            // `1 + tanh(u)` does not cancel.
            let err = (got as f64 - want).abs();
            let eps = f32::EPSILON as f64;
            let tol = if x64 >= 0.0 {
                4.0 * eps * want
            } else {
                2.0 * eps * -x64
            };
            assert!(err <= tol, "gelu({x}) = {got}, want {want}");
        }
    }
}
