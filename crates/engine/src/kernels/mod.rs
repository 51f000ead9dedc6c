//! CPU matmul kernels for the GGUF weight types candle 0.11 handles slowly: Q4_1 (the default
//! model's) and Q8_0 (its embedding / output matrix).
//!
//! candle 0.11 computes Q4_1 dot products with a scalar loop and runs a prompt batch through
//! the same one-row-at-a-time path as decoding. Here:
//! each activation row is quantized once to 8-bit blocks of 32 with ggml's Q8_1 rounding (scale
//! and sum stored as f16, like llama.cpp and candle), then integer dot products (AVX2 when the
//! CPU has it, checked at run time; a portable loop otherwise), weight rows split across candle's
//! thread pool, each weight row reused for every row of a prompt batch. The rounding is exactly
//! the reference's, so outputs match candle and llama.cpp token for token.

mod q;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use std::sync::Arc;

pub use q::QK;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Q4_1,
    Q8_0,
}

impl Kind {
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
        }
    }
}

/// A quantized (n, k) weight on the CPU that these kernels handle.
#[derive(Debug, Clone)]
pub(crate) struct FastWeight {
    q: Arc<QTensor>,
    kind: Kind,
    n: usize,
    k: usize,
}

impl FastWeight {
    /// Some when `w` is a CPU Q4_1 or Q8_0 matrix whose rows are whole blocks.
    pub(crate) fn new(w: &QMatMul) -> Option<Self> {
        if std::env::var_os("CANDOR_NO_KERNELS").is_some() {
            return None;
        }
        let QMatMul::QTensor(q) = w else { return None };
        if !q.device().is_cpu() {
            return None;
        }
        let kind = match q.dtype() {
            GgmlDType::Q4_1 => Kind::Q4_1,
            GgmlDType::Q8_0 => Kind::Q8_0,
            _ => return None,
        };
        let (n, k) = q.shape().dims2().ok()?;
        if k == 0 || n == 0 || k % QK != 0 {
            return None;
        }
        let w = Self {
            q: q.clone(),
            kind,
            n,
            k,
        };
        // The storage must hold exactly the blocks the shape implies.
        let bytes = w.q.data().ok()?.len();
        (bytes == n * (k / QK) * kind.block_bytes()).then_some(w)
    }

    /// `dst (m, n) = x (m, k) · Wᵀ`.
    fn matmul(&self, x: &[f32], m: usize, dst: &mut [f32]) -> candle_core::Result<()> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k || dst.len() != m * n {
            candle_core::bail!(
                "fast matmul: bad sizes {} {} ({m},{k},{n})",
                x.len(),
                dst.len()
            )
        }
        let data = self.q.data()?;
        let w: &[u8] = &data;
        let job = q::Job {
            kind: self.kind,
            w,
            n,
            dst: SendPtr(dst.as_mut_ptr()),
        };
        q::matmul_int8(&[job], x, m, k);
        Ok(())
    }
}

/// The rows of `x` as f32 when the kernels can take it: on the CPU, f32, last dim `k`.
fn small_input(x: &Tensor, k: usize) -> candle_core::Result<Option<(Vec<f32>, usize)>> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || x.dims().last() != Some(&k) {
        return Ok(None);
    }
    let m = x.elem_count() / k;
    if m == 0 {
        return Ok(None);
    }
    Ok(Some((x.flatten_all()?.to_vec1::<f32>()?, m)))
}

fn out_tensor(x: &Tensor, data: Vec<f32>, n: usize) -> candle_core::Result<Tensor> {
    let mut dims = x.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Tensor::from_vec(data, dims, x.device())
}

/// Several weights with the same input width applied to one small input (decoding): one
/// activation quantization and one pool dispatch for all. None when the kernels do not apply
/// (the caller then runs them one by one).
pub(crate) fn forward_many(
    ws: &[&FastWeight],
    x: &Tensor,
) -> candle_core::Result<Option<Vec<Tensor>>> {
    let Some(first) = ws.first() else {
        return Ok(None);
    };
    let k = first.k;
    if ws.iter().any(|w| w.k != k) {
        return Ok(None);
    }
    let Some((xs, m)) = small_input(x, k)? else {
        return Ok(None);
    };
    let datas = ws
        .iter()
        .map(|w| w.q.data())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; m * w.n]).collect();
    let jobs: Vec<q::Job> = ws
        .iter()
        .zip(&datas)
        .zip(outs.iter_mut())
        .map(|((w, d), o)| q::Job {
            kind: w.kind,
            w: d,
            n: w.n,
            dst: SendPtr(o.as_mut_ptr()),
        })
        .collect();
    q::matmul_int8(&jobs, &xs, m, k);
    drop(jobs);
    outs.into_iter()
        .zip(ws)
        .map(|(o, w)| out_tensor(x, o, w.n))
        .collect::<candle_core::Result<Vec<_>>>()
        .map(Some)
}

/// `silu(x·Gᵀ) ⊙ (x·Uᵀ)` in one pass for a small input; None when the kernels do not apply.
pub(crate) fn swiglu(
    g: &FastWeight,
    u: &FastWeight,
    x: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    if g.kind != u.kind || g.n != u.n || g.k != u.k {
        return Ok(None);
    }
    let Some((xs, m)) = small_input(x, g.k)? else {
        return Ok(None);
    };
    let (gd, ud) = (g.q.data()?, u.q.data()?);
    let mut out = vec![0f32; m * g.n];
    q::swiglu_int8(g.kind, &gd, &ud, &xs, m, g.n, g.k, &mut out);
    out_tensor(x, out, g.n).map(Some)
}

impl CustomOp1 for FastWeight {
    fn name(&self) -> &'static str {
        "candor-qmatmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(xs) = storage else {
            candle_core::bail!("candor-qmatmul: f32 input expected")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("candor-qmatmul: contiguous input expected")
        };
        let mut dims = layout.shape().dims().to_vec();
        if dims.last() != Some(&self.k) {
            candle_core::bail!("candor-qmatmul: input {dims:?} does not end in {}", self.k)
        }
        let x = &xs[start..end];
        let m = x.len() / self.k;
        let mut dst = vec![0f32; m * self.n];
        self.matmul(x, m, &mut dst)?;
        if let Some(last) = dims.last_mut() {
            *last = self.n;
        }
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

/// Raw pointer that may cross to pool workers, which write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: only used for disjoint writes from pool workers while the owner waits.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn check(dtype: GgmlDType, m: usize, n: usize, k: usize) {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, m, k), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let qm = QMatMul::from_qtensor(q).unwrap();
        let reference = qm.forward_ref(&x);
        let fast = FastWeight::new(&qm).expect("fast weight");
        let y = x.apply_op1_no_bwd(&fast).unwrap();
        let diff = (y - &reference)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = reference
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff <= 2e-2 * scale.max(1.0),
            "{dtype:?} m={m} n={n} k={k}: {diff} vs {scale}"
        );
    }

    trait Ref {
        fn forward_ref(&self, x: &Tensor) -> Tensor;
    }
    impl Ref for QMatMul {
        fn forward_ref(&self, x: &Tensor) -> Tensor {
            use candle_core::Module;
            self.forward(x).unwrap()
        }
    }

    #[test]
    fn q4_1_matches_candle() {
        for &(m, n, k) in &[
            (1, 7, 64),
            (1, 64, 576),
            (3, 130, 96),
            (20, 33, 128),
            (40, 300, 64),
        ] {
            check(GgmlDType::Q4_1, m, n, k);
        }
    }

    #[test]
    fn q8_0_matches_candle() {
        for &(m, n, k) in &[(1, 5, 32), (1, 64, 576), (5, 9, 96), (17, 260, 64)] {
            check(GgmlDType::Q8_0, m, n, k);
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let k = 256;
        let n = 9;
        let mut s = 1u32;
        let mut rnd = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let x: Vec<f32> = (0..k).map(|_| rnd()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rnd()).collect();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&wt, dtype).unwrap();
            let qm = QMatMul::from_qtensor(q).unwrap();
            let f = FastWeight::new(&qm).unwrap();
            let data = f.q.data().unwrap();
            let mut a = vec![q::ActBlock::default(); k / QK];
            q::quantize_row(&x, &mut a);
            let rb = (k / QK) * f.kind.block_bytes();
            for r in 0..n {
                let row = &data[r * rb..(r + 1) * rb];
                let s = q::dot_scalar(f.kind, row, &a);
                let v = q::dot(f.kind, row, &a);
                assert!(
                    (s - v).abs() <= 1e-4 * s.abs().max(1.0),
                    "{dtype:?} {s} {v}"
                );
            }
        }
    }
}
