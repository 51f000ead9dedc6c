//! Intel AMX tile products for prompt rows, on Sapphire Rapids and later Xeons where the OS
//! lets a process use the tile registers: Q4_K, Q5_K and Q6_K weights.
//!
//! These formats give each sub-block (32 or 16 values) a small integer scale `sc`, and the VNNI
//! kernels sum `sc·Σ q·x` exactly per super-block of 256 values and round once. A tile product
//! cannot stop at each sub-block to apply its scale without wasting most of the tile, so the
//! scale goes into the weights instead: `w = sc·q` (Q6_K: `sc·(q − 32)`) needs up to 13 bits
//! and a sign, and `w = 128·(w >> 7) + (w & 127)` splits it into two signed bytes. Two
//! `tdpbssd`s per 64 values then give `Σ (w >> 7)·x` and `Σ (w & 127)·x` over a whole
//! super-block, and `128·hi + lo` is the VNNI kernels' exact sum, which takes the same float
//! steps (`k_finish`): a row's outputs are the same bits whichever kernel formed them, so a
//! sequence's results do not depend on what else shares its batch.
//!
//! The 32-value formats scale each block by a float, so a tile product would stop at every
//! block (32 values) and its sums take the float steps one by one; that was slower than the
//! two-group 512-bit `vpdpbusd` kernels (one core, a 1536 × 576 weight, 128 rows: Q4_1 128 vs
//! 171 G multiply-adds a second, Q8_0 144 vs 183, Q4_0 147 vs 181, Q5_0 145 vs 147), so they
//! stay on those.
//!
//! A tile product covers two neighbouring groups of eight weight rows (16 columns of sums), the
//! most a tile holds. The weights stay packed for the VNNI kernels (one copy in memory): before
//! a pair of groups' rows go through, its scaled values are written one byte each to a
//! per-thread buffer (8 KiB a super-block) in the layout a tile load wants, and reused by every
//! pass of 16 or 32 rows.

use super::packed::{q4k_vector, ActBlockK, G, QK_K};
use super::x86::{k_finish_pair, k_min_pairs, pair128, pair_out, q6k_values};
use super::{QuantizedActivations, WeightFormat};
use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::{Cell, RefCell};
use std::sync::OnceLock;

/// Activation rows per tile product.
const ROWS: usize = 16;
/// Columns of a tile product: two groups of eight weight rows.
const COLS: usize = 2 * G;
/// The i32 sums of one tile of rows and one super-block: 16 × 16 of the high parts, then as
/// many of the low parts.
const TILE_SUMS: usize = 2 * ROWS * COLS;
/// Bytes of a prepared super-block: for each of its four chunks of 64 values, the tiles of 16
/// rows × 64 bytes (both groups) of the scaled values' high and low part.
const PREPARED: usize = 4 * 2 * 1024;
/// Bytes from a prepared tile of high parts to its low parts.
const LOW_PARTS: usize = 1024;

/// Whether this process multiplies on AMX: the CPU has AMX-INT8 and AVX-512BW, the kernel
/// grants the tile state (Linux's `ARCH_REQ_XCOMP_PERM`), the VNNI kernels are in use (not
/// `CANDOR_CPU=avx2`) and `CANDOR_CPU=avx512` does not rule the tiles out.
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let edx = __cpuid_count(7, 0).edx;
        let (tile, int8) = (edx & (1 << 24) != 0, edx & (1 << 25) != 0);
        let vnni = matches!(
            super::isa::Isa::best(),
            super::isa::Isa::AvxVnni | super::isa::Isa::Avx512Vnni
        );
        tile && int8
            && vnni
            && is_x86_feature_detected!("avx512bw")
            && !super::isa::no_amx()
            && permitted()
    })
}

/// Asks Linux for the tile data state; false where the kernel refuses (or predates AMX), and
/// on other systems, where candor does not ask.
fn permitted() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call with integer arguments.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Whether `m` rows of weights stored as `kind` go through here.
pub(super) fn takes(kind: WeightFormat, m: usize) -> bool {
    min_rows(kind).is_some_and(|min| m >= min) && available()
}

/// The fewest rows of `kind` worth the tiles (None: never): the weights' preparation is paid
/// once per call, whatever the rows. One core, a 2048 × 2048 weight, G multiply-adds a second
/// with AMX vs the 512-bit VNNI kernels: Q4_K (two-group kernel) 32 rows 115–131 vs 182–187,
/// 64 and 96 level, 128 214 vs 194, 256 215–221 vs 194; Q6_K 32 rows 123–136 vs 92–94, Q5_K
/// 128–131 vs 100–106. End to end (the 1.7B shape, Q4_K_M, 2 threads, tok/s): 16-token
/// prompts 89 vs 95 on the VNNI kernels alone; 32 tokens 128–131 with Q4_K on the tiles, 142–147
/// with only Q5_K and Q6_K there; 64 tokens 177–182 vs 170–178 (Q4_K on the tiles or not).
pub(super) fn min_rows(kind: WeightFormat) -> Option<usize> {
    match kind {
        WeightFormat::Q4K => Some(64),
        WeightFormat::Q5K | WeightFormat::Q6K => Some(32),
        _ => None,
    }
}

thread_local! {
    /// Whether the tile shapes are loaded on this thread.
    static CONFIGURED: Cell<bool> = const { Cell::new(false) };
    /// The prepared weights of the call's groups, one buffer per weight.
    static PREPARED_BUF: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// The tile products' sums of 16 or 32 rows, super-block by super-block.
    static SUMS: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

/// Loads the tile shapes on this thread unless they are loaded already: tmm0 and tmm1 the 16 ×
/// 16 i32 sums of the high and low parts, tmm2 and tmm3 16 activation rows of 64 values (even
/// and odd chunks), tmm4–tmm7 the prepared high and low parts of an even and an odd chunk (16
/// rows of four values of each of the pair's sixteen weight rows). Alternating the chunks'
/// tiles lets the loads of one run while the products of the other do. For 32 rows
/// ([`products2`]): tmm0–tmm3 the two row tiles' sums, tmm4 and tmm5 their activations, tmm6
/// and tmm7 the chunk's high and low parts, each loaded once for both (all tiles 16 × 64 bytes
/// either way).
fn configure() {
    if CONFIGURED.get() {
        return;
    }
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette 1
    for t in 0..8 {
        cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&u16::to_le_bytes(64));
        cfg[48 + t] = ROWS as u8;
    }
    // SAFETY: `available` holds (checked by every caller), and the 64 bytes are a valid
    // palette-1 configuration.
    unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly)) };
    CONFIGURED.set(true);
}

/// The dot products of the same two neighbouring groups of each weight in `ws` (each slice
/// holds both, `gbytes` apart; packed as `kind`, one that [`takes`]) with activation rows 0..r,
/// 16 or 32 rows per pass: `f(half, row, dots)`, half 0 for the first group. Returns r, the
/// rows it did (a multiple of 16); the rest are left to the VNNI kernels.
pub(super) fn pair_rows<const W: usize>(
    kind: WeightFormat,
    ws: [&[u8]; W],
    gbytes: usize,
    acts: &QuantizedActivations,
    m: usize,
    f: &mut impl FnMut(usize, usize, [&[f32; G]; W]),
) -> usize {
    assert!(takes(kind, m));
    let nb = acts.k / QK_K;
    let bytes = kind.group_block_bytes();
    assert!(gbytes >= nb * bytes);
    assert!(acts.super_blocks.len() >= m * nb);
    configure();
    PREPARED_BUF.with_borrow_mut(|prepared| {
        prepared.resize_with(prepared.len().max(W), Vec::new);
        for (w, buf) in ws.iter().zip(prepared.iter_mut()) {
            assert!(w.len() >= gbytes + nb * bytes);
            buf.resize(nb * PREPARED, 0);
            for half in 0..2 {
                // SAFETY: AVX-512BW is there (`available`); reads stay within the nb packed
                // super-blocks of each group of `w` and writes within the nb prepared ones of
                // `buf` (checked).
                unsafe {
                    let (w, out) = (
                        w.as_ptr().add(half * gbytes),
                        buf.as_mut_ptr().add(32 * half),
                    );
                    match kind {
                        WeightFormat::Q4K => prepare_q4k::<false>(w, nb, out),
                        WeightFormat::Q5K => prepare_q4k::<true>(w, nb, out),
                        _ => prepare_q6k(w, nb, out),
                    }
                };
            }
        }
        SUMS.with_borrow_mut(|sums| {
            // Two tiles of rows per pass where they last, sharing each weight tile load.
            sums.resize(2 * nb * TILE_SUMS, 0);
            let mut r = 0;
            while r + ROWS <= m {
                let tiles = 2.min((m - r) / ROWS);
                let mut outs = [[[[[0f32; G]; ROWS]; 2]; W]; 2];
                for (j, (w, buf)) in ws.iter().zip(prepared.iter()).enumerate() {
                    // SAFETY: AMX is available and configured on this thread; each group of `w`
                    // holds nb packed super-blocks, `buf` their prepared values, rows
                    // r..r + 16·tiles ≤ m of the activations nb super-blocks each and `sums`
                    // tiles·nb tiles' sums (all checked above).
                    unsafe {
                        let (w, buf) = (w.as_ptr(), buf.as_ptr());
                        let a = acts.super_blocks.as_ptr().add(r * nb);
                        if tiles == 2 {
                            products2(buf, a, nb, sums.as_mut_ptr());
                        } else {
                            products(buf, a, nb, sums.as_mut_ptr());
                        }
                        for (t, outs) in outs.iter_mut().take(tiles).enumerate() {
                            let a = a.add(t * ROWS * nb);
                            let sums = (&sums[t * TILE_SUMS..], tiles * TILE_SUMS);
                            let out = &mut outs[j];
                            if kind == WeightFormat::Q6K {
                                finish::<false>(w, (gbytes, bytes), a, nb, sums, out)
                            } else {
                                finish::<true>(w, (gbytes, bytes), a, nb, sums, out)
                            }
                        }
                    }
                }
                for (t, outs) in outs.iter().take(tiles).enumerate() {
                    for half in 0..2 {
                        for i in 0..ROWS {
                            f(half, r + ROWS * t + i, outs.each_ref().map(|o| &o[half][i]));
                        }
                    }
                }
                r += ROWS * tiles;
            }
            r
        })
    })
}

/// Byte 4c + t of a tile row takes weight row c's scale: indices for `_mm256_shuffle_epi8`
/// over the eight scales in each 128-bit lane.
const SPREAD_SCALES: [i8; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7,
];

/// The eight rows' scales at `at` (one byte each, signed if `SIGNED`), each four times, as
/// 16-bit lanes in the order of a tile row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn row_scales<const SIGNED: bool>(at: *const u8) -> __m512i {
    let sc = _mm256_set1_epi64x((at as *const i64).read_unaligned());
    let sc = _mm256_shuffle_epi8(
        sc,
        _mm256_loadu_si256(SPREAD_SCALES.as_ptr() as *const __m256i),
    );
    if SIGNED {
        _mm512_cvtepi8_epi16(sc)
    } else {
        _mm512_cvtepu8_epi16(sc)
    }
}

/// Stores the 32 scaled values `w` (16-bit lanes, |w| < 2^13) of one group in a tile row at
/// `at` as their high part `w >> 7` and, `LOW_PARTS` bytes on, their low part `w & 127`, one
/// signed byte each.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn store_split(w: __m512i, at: *mut u8) {
    let hi = _mm512_cvtepi16_epi8(_mm512_srai_epi16(w, 7));
    let lo = _mm512_cvtepi16_epi8(_mm512_and_si512(w, _mm512_set1_epi16(127)));
    _mm256_storeu_si256(at as *mut __m256i, hi);
    _mm256_storeu_si256(at.add(LOW_PARTS) as *mut __m256i, lo);
}

/// A Q4_K (or, `FIVE`, Q5_K) group's values times their sub-block's scale, split as
/// [`store_split`] says, as its half of tile rows (the caller offsets `out` by 32 bytes for
/// the second group): for super-block i and chunk j (sub-blocks 2j and 2j+1), the high parts'
/// tile at `i·PREPARED + 2048j`; row l < 8 holds values 4l..4l+4 of sub-block 2j of each
/// weight row, row 8 + l those of sub-block 2j+1, rows 64 bytes apart.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn prepare_q4k<const FIVE: bool>(w: *const u8, nb: usize, out: *mut u8) {
    let low = _mm256_set1_epi8(0x0F);
    let bit4 = _mm256_set1_epi8(0x10);
    let kind = if FIVE {
        WeightFormat::Q5K
    } else {
        WeightFormat::Q4K
    };
    let bytes = kind.group_block_bytes();
    for i in 0..nb {
        let (b, o) = (w.add(i * bytes), out.add(i * PREPARED));
        for j in 0..4 {
            let scales = [
                row_scales::<false>(b.add(32 + 16 * j)),
                row_scales::<false>(b.add(40 + 16 * j)),
            ];
            for l in 0..8 {
                let v = _mm256_loadu_si256(b.add(160 + 32 * q4k_vector(j, l)) as *const __m256i);
                let mut values = [
                    _mm256_and_si256(v, low),
                    _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                ];
                if FIVE {
                    // Q5_K's fifth bits: bit 2j (low nibbles) and 2j+1 (high) of vector l,
                    // moved to bit 4.
                    let h = _mm256_loadu_si256(
                        b.add(WeightFormat::Q4K.group_block_bytes() + 32 * l) as *const __m256i,
                    );
                    for (t, q) in values.iter_mut().enumerate() {
                        let shift = _mm_cvtsi32_si128(4 - (2 * j + t) as i32);
                        let fifth = if 2 * j + t <= 4 {
                            _mm256_sll_epi16(h, shift)
                        } else {
                            _mm256_srl_epi16(h, _mm_cvtsi32_si128((2 * j + t) as i32 - 4))
                        };
                        *q = _mm256_or_si256(*q, _mm256_and_si256(fifth, bit4));
                    }
                }
                for (h, (q, sc)) in values.iter().zip(scales).enumerate() {
                    let w = _mm512_mullo_epi16(_mm512_cvtepu8_epi16(*q), sc);
                    store_split(w, o.add(2048 * j + 64 * (8 * h + l)));
                }
            }
        }
    }
}

/// A Q6_K group's values less 32, times their sub-block's scale, split and laid out as in
/// [`prepare_q4k`]: chunk c of 64 values holds sub-blocks 4c..4c+4 (of 16), its row k values
/// 4k..4k+4 of the chunk.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn prepare_q6k(w: *const u8, nb: usize, out: *mut u8) {
    let m32 = _mm512_set1_epi16(32);
    for i in 0..nb {
        let b = w.add(i * WeightFormat::Q6K.group_block_bytes());
        let o = out.add(i * PREPARED);
        for c in 0..4 {
            // Values 64c.. are value vectors 2(c % 2) and 2(c % 2) + 1 of half j = c / 2, as
            // the VNNI kernel reads them (`q6k_base`).
            let j = c / 2;
            for k in 0..16 {
                let (v, l) = (2 * (c % 2) + k / 8, k % 8);
                let q = _mm512_cvtepu8_epi16(q6k_values(b, j, v, l));
                let q = _mm512_sub_epi16(q, m32);
                let u = 8 * j + 2 * v + l / 4;
                let w = _mm512_mullo_epi16(q, row_scales::<true>(b.add(16 + 8 * u)));
                store_split(w, o.add(2048 * c + 64 * k));
            }
        }
    }
}

/// The tile products of 16 rows (row r's nb super-blocks at `a + r·nb`) with a prepared pair
/// of groups: super-block i's 16 × 16 sums of the high parts at `sums + i·TILE_SUMS`, of the
/// low parts 256 on (row r's at 16r, the first group's eight columns first).
///
/// # Safety
/// AMX must be available and this thread configured ([`configure`]); `prepared` holds nb
/// prepared super-blocks, `a` 16 × nb activation super-blocks and `sums` nb × TILE_SUMS i32.
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn products(prepared: *const u8, a: *const ActBlockK, nb: usize, sums: *mut i32) {
    let stride = nb * std::mem::size_of::<ActBlockK>();
    // Chunk c of 64 values: the rows' values (64c bytes on) times the high and low parts
    // (2048c bytes on) of the prepared chunk, in the even or odd chunks' tiles.
    macro_rules! chunk {
        ($x:literal, $t:literal, $a:literal, $hi:literal, $lo:literal) => {
            concat!(
                "tileloadd tmm",
                $a,
                ", [{x} + {stride}*1 + ",
                $x,
                "]\n",
                "tileloadd tmm",
                $hi,
                ", [{t} + {row}*1 + ",
                $t,
                "]\n",
                "tileloadd tmm",
                $lo,
                ", [{t} + {row}*1 + ",
                $t,
                " + 1024]\n",
                "tdpbssd tmm0, tmm",
                $a,
                ", tmm",
                $hi,
                "\n",
                "tdpbssd tmm1, tmm",
                $a,
                ", tmm",
                $lo,
                "\n",
            )
        };
    }
    for i in 0..nb {
        let x = (*a.add(i)).qs.as_ptr();
        let (t, c) = (prepared.add(i * PREPARED), sums.add(i * TILE_SUMS));
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            chunk!("0", "0", "2", "4", "5"),
            chunk!("64", "2048", "3", "6", "7"),
            chunk!("128", "4096", "2", "4", "5"),
            chunk!("192", "6144", "3", "6", "7"),
            "tilestored [{c} + {row}*1], tmm0",
            "tilestored [{c} + {row}*1 + 1024], tmm1",
            x = in(reg) x, stride = in(reg) stride, t = in(reg) t, c = in(reg) c,
            row = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// [`products`] for 32 rows, two tiles of 16 that share each load of the prepared weights:
/// super-block i's sums at `sums + 2i·TILE_SUMS`, the first 16 rows' then the next 16's.
///
/// # Safety
/// As [`products`], with 32 × nb activation super-blocks at `a` and 2·nb × TILE_SUMS i32 at
/// `sums`.
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn products2(prepared: *const u8, a: *const ActBlockK, nb: usize, sums: *mut i32) {
    let stride = nb * std::mem::size_of::<ActBlockK>();
    macro_rules! chunk {
        ($x:literal, $t:literal) => {
            concat!(
                "tileloadd tmm6, [{t} + {row}*1 + ",
                $t,
                "]\n",
                "tileloadd tmm4, [{x0} + {stride}*1 + ",
                $x,
                "]\n",
                "tileloadd tmm7, [{t} + {row}*1 + ",
                $t,
                " + 1024]\n",
                "tdpbssd tmm0, tmm4, tmm6\n",
                "tileloadd tmm5, [{x1} + {stride}*1 + ",
                $x,
                "]\n",
                "tdpbssd tmm1, tmm4, tmm7\n",
                "tdpbssd tmm2, tmm5, tmm6\n",
                "tdpbssd tmm3, tmm5, tmm7\n",
            )
        };
    }
    for i in 0..nb {
        let x0 = (*a.add(i)).qs.as_ptr();
        let x1 = (*a.add(ROWS * nb + i)).qs.as_ptr();
        let (t, c) = (prepared.add(i * PREPARED), sums.add(2 * i * TILE_SUMS));
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            chunk!("0", "0"),
            chunk!("64", "2048"),
            chunk!("128", "4096"),
            chunk!("192", "6144"),
            "tilestored [{c} + {row}*1], tmm0",
            "tilestored [{c} + {row}*1 + 1024], tmm1",
            "tilestored [{c} + {row}*1 + 2048], tmm2",
            "tilestored [{c} + {row}*1 + 3072], tmm3",
            x0 = in(reg) x0, x1 = in(reg) x1, stride = in(reg) stride, t = in(reg) t,
            c = in(reg) c, row = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// Both groups' outputs for each row from the tile sums, super-block by super-block as the VNNI
/// kernels add them: `128·hi + lo` is the exact Σ sc·Σ q·x (Q6_K: less 32·Σ sc·Σ x), then
/// `k_finish`'s float steps, with the mins' Σ m·Σ x for Q4_K and Q5_K (`MINS`), on both groups'
/// 16 columns at once.
///
/// # Safety
/// `w` holds the two groups' nb packed super-blocks of `bytes` (Q4_K or Q5_K if `MINS`, else
/// Q6_K), `gbytes` apart, and `a` 16 × nb activation super-blocks; `sums` the tile sums of
/// [`products`] (or one tile of [`products2`]), super-block i's at `i·stride`.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
#[allow(unsafe_op_in_unsafe_fn)]
unsafe fn finish<const MINS: bool>(
    w: *const u8,
    (gbytes, bytes): (usize, usize),
    a: *const ActBlockK,
    nb: usize,
    (sums, stride): (&[i32], usize),
    out: &mut [[[f32; G]; ROWS]; 2],
) {
    assert!(sums.len() >= (nb - 1) * stride + 2 * ROWS * COLS);
    let mut acc = [_mm512_setzero_ps(); ROWS];
    for i in 0..nb {
        let b = w.add(i * bytes);
        let dw = _mm512_cvtph_ps(pair128(b, gbytes));
        let mins = MINS.then(|| {
            (
                _mm512_cvtph_ps(pair128(b.add(16), gbytes)),
                k_min_pairs(b, gbytes),
            )
        });
        let block = sums.as_ptr().add(i * stride);
        for (r, acc) in acc.iter_mut().enumerate() {
            let y = &*a.add(r * nb + i);
            let hi = _mm512_loadu_si512(block.add(COLS * r) as *const _);
            let lo = _mm512_loadu_si512(block.add(ROWS * COLS + COLS * r) as *const _);
            let sum = _mm512_add_epi32(_mm512_slli_epi32(hi, 7), lo);
            *acc = k_finish_pair(*acc, y, dw, sum, mins);
        }
    }
    *out = pair_out(&acc);
}

const _: () = assert!(QK_K == 256 && G == 8);
