//! Which instruction set multiplies: the CPU's features, `CANDOR_CPU`'s limits, and the dot
//! products of one packed group dispatched to the kernels of the set chosen.

#[cfg(target_arch = "x86_64")]
use super::amx;
use super::packed::{self, ActBlock, ActBlockK, G, QK, QK_K};
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{QuantizedActivations, WeightFormat};
use std::sync::OnceLock;

/// The instruction set the kernels use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX512-VNNI's `vpdpbusd` on 256-bit vectors (Zen 4, Ice Lake).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
}

impl Isa {
    /// Every instruction set this CPU can run, fastest last.
    pub(crate) fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 {
                v.push(Isa::Avx2);
                if avx2_only() {
                    return v;
                }
                if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl") {
                    v.push(Isa::Avx512Vnni);
                }
                if is_x86_feature_detected!("avxvnni") {
                    v.push(Isa::AvxVnni);
                }
            }
        }
        v
    }

    pub(crate) fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| *Isa::available().last().unwrap_or(&Isa::Portable))
    }

    /// The dot products of one packed group `w` with activation rows r..r+M.
    #[inline]
    pub(super) fn group_dots<const M: usize>(
        self,
        kind: WeightFormat,
        w: &[u8],
        acts: &QuantizedActivations,
        r: usize,
    ) -> [[f32; G]; M] {
        if kind.block_values() == QK_K {
            let nb = acts.k / QK_K;
            debug_assert!(w.len() >= nb * kind.group_block_bytes());
            #[cfg(target_arch = "x86_64")]
            if let Some(out) = self.k_group_dots::<M>(kind, w, acts, r, nb) {
                return out;
            }
            return std::array::from_fn(|i| self.group_dots_k(kind, w, acts.row_k(r + i), nb));
        }
        let nb = acts.k / QK;
        debug_assert!(w.len() >= nb * kind.group_block_bytes());
        // One row (decoding) of a 4- or 5-bit format on AVX512-VNNI: the 512-bit kernel, half
        // the instructions of the 256-bit ones, which left a core's decoding short of its
        // memory's pace (1 MB matrices, one thread: Q4_0 8.6–11.6 -> 12.1–13.4 GB/s, Q4_1
        // 8.6–12.9 -> 10.2–14.0, Q5_0 8.5–11.3 -> 9.4–13.5, alternating on a noisy VM). The
        // same bits.
        #[cfg(target_arch = "x86_64")]
        if M == 1 && matches!(self, Isa::AvxVnni | Isa::Avx512Vnni) && avx512vnni() {
            let (w, a) = (w.as_ptr(), acts.row(r).as_ptr());
            // SAFETY: the CPU has AVX512-VNNI, F and BW (checked) and AVX2, FMA and F16C (either
            // VNNI instruction set); `w` holds `nb` group blocks and the row `nb` blocks.
            let one = unsafe {
                match kind {
                    WeightFormat::Q4_0 => Some(x86::ref_one::<false, false>(w, a, nb)),
                    WeightFormat::Q4_1 => Some(x86::ref_one::<false, true>(w, a, nb)),
                    WeightFormat::Q5_0 => Some(x86::ref_one::<true, false>(w, a, nb)),
                    WeightFormat::Q5_1 => Some(x86::ref_one::<true, true>(w, a, nb)),
                    _ => None,
                }
            };
            if let Some(one) = one {
                return [one; M];
            }
        }
        let a: [&[ActBlock]; M] = std::array::from_fn(|i| acts.row(r + i));
        let mut out = [[0f32; G]; M];
        #[cfg(target_arch = "x86_64")]
        macro_rules! run {
            ($isa:ident) => {
                // SAFETY: an ISA is only chosen when the CPU has its features (`available`); `w`
                // holds `nb` group blocks and each row of `a` `nb` blocks.
                out = unsafe {
                    let a = a.map(|a| a.as_ptr());
                    match kind {
                        WeightFormat::Q4_1 => x86::$isa::q4_1::<M>(w.as_ptr(), a, nb),
                        WeightFormat::Q5_0 => x86::$isa::q5_0::<M>(w.as_ptr(), a, nb),
                        WeightFormat::Q5_1 => x86::$isa::q5_1::<M>(w.as_ptr(), a, nb),
                        WeightFormat::Q4_0 => x86::$isa::q4_0::<M>(w.as_ptr(), a, nb),
                        WeightFormat::Q8_0 => x86::$isa::q8_0::<M>(w.as_ptr(), a, nb),
                        WeightFormat::Q2K
                        | WeightFormat::Q3K
                        | WeightFormat::Q4K
                        | WeightFormat::Q5K
                        | WeightFormat::Q6K => unreachable!("K formats are handled above"),
                    }
                }
            };
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => run!(avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => run!(avx512_vnni),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => run!(avx_vnni),
            Isa::Portable => {
                let w = &w[..nb * kind.group_block_bytes()];
                for (o, a) in out.iter_mut().zip(a) {
                    *o = packed::group_dot_scalar(kind, w, a);
                }
            }
        }
        out
    }

    /// Whether the kernels take eight activation rows per call rather than four: the
    /// `vpdpbusd` kernels, where they have 32 vector registers to hold eight rows' sums
    /// (AVX-512; prompts, 2 threads: the 1.7B shape's Q4_K_M +20% over four, the default
    /// model's Q4_1 +17%). Each row's sums are the same whatever the rows per call.
    pub(super) fn eight_rows(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => true,
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => cfg!(target_feature = "avx512f"),
            _ => false,
        }
    }

    /// The multi-row K-format kernels for this CPU, where one applies: the dot products of
    /// group `w` with activation rows r..r+M.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(super) fn k_group_dots<const M: usize>(
        self,
        kind: WeightFormat,
        w: &[u8],
        acts: &QuantizedActivations,
        r: usize,
        nb: usize,
    ) -> Option<[[f32; G]; M]> {
        let a: [*const ActBlockK; M] = std::array::from_fn(|i| acts.row_k(r + i).as_ptr());
        let w = w.as_ptr();
        // Q4_K, Q5_K and Q6_K sum exactly, so any of their kernels gives the same bits: the
        // fastest here is taken. `vpdpbusd` first (512 bits wide for Q5_K and Q6_K where the
        // CPU has AVX512-VNNI: their unpacking is heavier than Q4_K's; per 1024 × 2048 weight
        // in L2 on one core, Q6_K one row 40 vs 84 µs, Q5_K one row 45 vs 48 µs and four rows
        // 75 vs 90; Q4_K measured 10% slower at 512 bits, so it stays at 256), then AVX-512's wider
        // `vpmaddubsw`, then AVX2's emulated `vpdpbusd` (also for one row: faster than a one-row
        // kernel, measured).
        macro_rules! k {
            ($isa:ident) => {
                // SAFETY: an ISA is only chosen when the CPU has its features (`available`);
                // `w` holds `nb` group super-blocks and each row of `a` `nb` activation ones.
                Some(unsafe {
                    match kind {
                        WeightFormat::Q4K => x86::$isa::q4k5k::<M, false>(w, a, nb),
                        WeightFormat::Q5K => x86::$isa::q4k5k::<M, true>(w, a, nb),
                        _ => x86::$isa::q6k::<M>(w, a, nb),
                    }
                })
            };
        }
        let exact = kind.sums_exactly();
        match self {
            Isa::AvxVnni | Isa::Avx512Vnni
                if matches!(kind, WeightFormat::Q5K | WeightFormat::Q6K) && avx512vnni() =>
            {
                // SAFETY: the CPU has AVX512-VNNI, F and BW (checked) and AVX2, FMA, F16C (any
                // ISA but the portable one); `w` and `a` as above.
                return Some(unsafe {
                    match kind {
                        WeightFormat::Q5K => x86::q4k5k_vnni512::<M, true>(w, a, nb),
                        _ => x86::q6k_vnni512::<M>(w, a, nb),
                    }
                });
            }
            Isa::AvxVnni if exact => return k!(avx_vnni),
            Isa::Avx512Vnni if exact => return k!(avx512_vnni),
            _ => {}
        }
        // Q2_K / Q3_K decode (one row) is faster on the 256-bit kernels (measured).
        let one_row_2k3k = M == 1 && matches!(kind, WeightFormat::Q2K | WeightFormat::Q3K);
        if self != Isa::Portable && avx512bw() && !one_row_2k3k {
            // SAFETY: the CPU has AVX-512F/BW (checked) and AVX2, FMA, F16C (any ISA but the
            // portable one); `w` and `a` as above.
            return Some(unsafe {
                match kind {
                    WeightFormat::Q2K => x86::q2k3k_512::<M, true>(w, a, nb),
                    WeightFormat::Q3K => x86::q2k3k_512::<M, false>(w, a, nb),
                    WeightFormat::Q4K => x86::q4k5k_512::<M, false>(w, a, nb),
                    WeightFormat::Q5K => x86::q4k5k_512::<M, true>(w, a, nb),
                    _ => x86::q6k_512::<M>(w, a, nb),
                }
            });
        }
        match self {
            Isa::Avx2 if exact => k!(avx2),
            _ => None,
        }
    }

    /// The fewest rows (four or eight) that [`Isa::pair_dots`] multiplies for `kind` here, None
    /// where it does not: the 32-value formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), Q4_K, Q5_K and
    /// Q6_K where the VNNI kernels run and the CPU has AVX512-VNNI (one 512-bit vector holds
    /// two groups' lanes). One core, a 2048 × 2048 weight, one group's 512-bit kernel vs two
    /// groups': Q4_K eight rows 248 vs 169 µs, four 150 vs 111; Q6_K 382 vs 275 and 200 vs 179;
    /// Q5_K 311 vs 238 and 160 vs 187, so four rows of Q5_K stay on one group.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn pair_rows(self, kind: WeightFormat) -> Option<usize> {
        let pairs = matches!(self, Isa::AvxVnni | Isa::Avx512Vnni)
            && !matches!(kind, WeightFormat::Q2K | WeightFormat::Q3K)
            && avx512vnni();
        pairs.then_some(if kind == WeightFormat::Q5K { 8 } else { 4 })
    }

    /// The dot products of two neighbouring groups (`w` holds both, `gbytes` apart) with
    /// activation rows r..r+M, each group's as [`Isa::group_dots`] gives them (same bits); only
    /// where [`Isa::pair_rows`] has a count for `kind`. `next`: the pair's bytes come from
    /// memory (a decoding batch's first rows), so the next pair's are fetched meanwhile.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn pair_dots<const M: usize>(
        self,
        kind: WeightFormat,
        w: &[u8],
        gbytes: usize,
        acts: &QuantizedActivations,
        r: usize,
        next: bool,
    ) -> [[[f32; G]; M]; 2] {
        assert!(self.pair_rows(kind).is_some());
        let nb = acts.k / kind.block_values();
        assert!(gbytes >= nb * kind.group_block_bytes() && w.len() >= gbytes * 2);
        let w = w.as_ptr();
        // SAFETY: the CPU has AVX512-VNNI, F and BW and AVX2, FMA, F16C (`pairs`); `w` holds
        // both groups' nb (super-)blocks (checked) and each row of `a` nb activation ones
        // (`row`, `row_k`).
        unsafe {
            if kind.block_values() == QK_K {
                let a: [*const ActBlockK; M] = std::array::from_fn(|i| acts.row_k(r + i).as_ptr());
                return match kind {
                    WeightFormat::Q4K => x86::q4k5k_pair::<M, false>(w, gbytes, next, a, nb),
                    WeightFormat::Q5K => x86::q4k5k_pair::<M, true>(w, gbytes, next, a, nb),
                    _ => x86::q6k_pair(w, gbytes, next, a, nb),
                };
            }
            let a: [*const ActBlock; M] = std::array::from_fn(|i| acts.row(r + i).as_ptr());
            match kind {
                WeightFormat::Q4_0 => x86::ref_pair::<M, false, false>(w, gbytes, next, a, nb),
                WeightFormat::Q4_1 => x86::ref_pair::<M, false, true>(w, gbytes, next, a, nb),
                WeightFormat::Q5_0 => x86::ref_pair::<M, true, false>(w, gbytes, next, a, nb),
                WeightFormat::Q5_1 => x86::ref_pair::<M, true, true>(w, gbytes, next, a, nb),
                _ => x86::q8_0_pair(w, gbytes, next, a, nb),
            }
        }
    }

    /// One Q2_K / Q3_K group with one activation row on 256-bit vectors (no VNNI variant: the
    /// scales multiply in `vpmaddwd` either way); the other K formats go to `k_group_dots` on
    /// every x86 instruction set, so here they take the portable loop.
    #[inline]
    pub(super) fn group_dots_k(
        self,
        kind: WeightFormat,
        w: &[u8],
        a: &[ActBlockK],
        nb: usize,
    ) -> [f32; G] {
        match (self, kind) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2 | Isa::Avx512Vnni | Isa::AvxVnni, WeightFormat::Q3K) => {
                // SAFETY: every ISA but the portable one implies AVX2, FMA and F16C; `w` holds
                // `nb` group super-blocks and `a` `nb` activation super-blocks.
                unsafe { x86::q2k3k::<false>(w.as_ptr(), a.as_ptr(), nb) }
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2 | Isa::Avx512Vnni | Isa::AvxVnni, WeightFormat::Q2K) => {
                // SAFETY: as above.
                unsafe { x86::q2k3k::<true>(w.as_ptr(), a.as_ptr(), nb) }
            }
            _ => packed::group_dot_k_scalar(kind, &w[..nb * kind.group_block_bytes()], &a[..nb]),
        }
    }
}

/// The instruction sets candor's CPU kernels use on this machine, e.g. "avx-vnni+avx512bw"
/// ("+avx512-vnni" where Q5_K and Q6_K take 512-bit `vpdpbusd` besides another VNNI set, and
/// "+amx-int8" where prompt rows go through AMX tiles).
pub fn instruction_sets() -> String {
    let mut v = vec![match Isa::best() {
        Isa::Portable => "portable",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => "avx2",
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => "avx512-vnni",
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => "avx-vnni",
    }];
    #[cfg(target_arch = "x86_64")]
    if Isa::best() != Isa::Portable && avx512bw() {
        v.push("avx512bw");
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::best() == Isa::AvxVnni && avx512vnni() {
        v.push("avx512-vnni");
    }
    #[cfg(target_arch = "x86_64")]
    if amx::available() {
        v.push("amx-int8");
    }
    v.join("+")
}

/// Whether the CPU has AVX-512F and BW (the 512-bit K-format kernels), checked once.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx512bw() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        !avx2_only() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    })
}

/// Whether the CPU has AVX512-VNNI besides F and BW (512-bit `vpdpbusd`), checked once.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx512vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| avx512bw() && is_x86_feature_detected!("avx512vnni"))
}

/// `CANDOR_CPU=avx2`: the matrix kernels use what every AVX2 CPU has (most laptops, AMD Zen 2
/// and 3), none of AVX-512 or VNNI, so that path can be measured on any machine. The attention
/// kernel's instruction set is fixed at build time: build with
/// `RUSTFLAGS="-C target-cpu=x86-64-v3"` to take it to AVX2 as well.
#[cfg(target_arch = "x86_64")]
pub(super) fn avx2_only() -> bool {
    cpu_limit() == Some(CpuLimit::Avx2)
}

/// `CANDOR_CPU=avx512`: the vector kernels but no AMX tiles, to measure the path of AVX-512
/// CPUs without AMX (and AMX's gain) on a CPU that has it.
#[cfg(target_arch = "x86_64")]
pub(super) fn no_amx() -> bool {
    cpu_limit() == Some(CpuLimit::Avx512)
}

#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuLimit {
    Avx2,
    Avx512,
}

/// The instruction sets `CANDOR_CPU` keeps the matrix kernels to, read once.
#[cfg(target_arch = "x86_64")]
fn cpu_limit() -> Option<CpuLimit> {
    static LIMIT: OnceLock<Option<CpuLimit>> = OnceLock::new();
    *LIMIT.get_or_init(|| match std::env::var("CANDOR_CPU") {
        Ok(v) if v.eq_ignore_ascii_case("avx2") => Some(CpuLimit::Avx2),
        Ok(v) if v.eq_ignore_ascii_case("avx512") => Some(CpuLimit::Avx512),
        Ok(v) if v.is_empty() => None,
        Ok(v) => {
            tracing::warn!(
                "CANDOR_CPU={v} is not a setting candor knows (it knows `avx2` and `avx512`); ignored"
            );
            None
        }
        Err(_) => None,
    })
}
