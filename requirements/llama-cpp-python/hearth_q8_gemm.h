// hearth: matrix multiplication of Q8_0 or Q5_0 weights by Q8_0 activations for x86-64 CPUs with
// AVX-512 VNNI or AVX2, giving the same floats as llamafile's tinyBLAS_Q0_AVX in fewer instructions
// and fewer trips to memory.
//
// Why: in batched steps (decode of many sequences, prompt chunks) llama.cpp multiplies Qwen2.5's
// Q5_0 weights (or hearth's Q8_0 rewrite of them) and its Q8_0 output matrix in tinyBLAS_Q0_AVX:
// ~68 % of a 16-sequence decode step on a 2-core EPYC. That kernel spends seven 256-bit
// instructions on each (row, column, block): a zeroed accumulator, two sign flips, the int8 dot
// product, an int-to-float conversion, a broadcast of the scale and the FMA; it unpacks a Q5_0
// block once per 4 columns, and loads each weight block once per 4 columns.
//
// What this does instead, per 32-value block, for two weight rows at once in one 512-bit register:
//   * the activations are prepared once per call: every byte offset by +128 (XOR 0x80), so they
//     are the unsigned operand of VPDPBUSD and the weights the signed one, with no sign flips;
//   * the offset adds 128 * (sum of four weights) to each int32 lane; each lane starts from minus
//     that, computed once per weight block and reused for every column, so the int32 lane sums
//     come out exactly as tinyBLAS's;
//   * each weight block is loaded (and a Q5_0 one unpacked) once for 16 columns, and the rows
//     ahead are prefetched: the weights stream from memory once per step;
//   * then the same float work as tinyBLAS, lane for lane: fp32(d_w) * fp32(d_x) rounded once,
//     FMA into eight float lanes per (row, column), and at the end the same horizontal sum.
// Integer sums are exact and every float operation happens in the same order on the same values,
// so the results are bit for bit those of tinyBLAS (hearth's tests compare the logits).
//
// Without AVX-512 VNNI (16 vector registers of 256 bits) a tile is one weight row by 8 columns.
// With AVX-VNNI the offset trick stays; with plain AVX2 the products are tinyBLAS's own
// (unsigned |w| times the activation with w's sign, in 16-bit pairs, which cannot saturate
// for Q8_0's -127..127), still with the sign of w taken once per block, not per column.
//
// Included by sgemm.cpp (hearth's patch of llama-cpp-python's vendored llama.cpp).

#pragma once

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__AVX512BW__) && defined(__F16C__)
#define HEARTH_Q8_GEMM 512
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define HEARTH_Q8_GEMM 256
#endif

#if defined(HEARTH_Q8_GEMM)

#include <immintrin.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace hearth_q8 {

// The activations of one call, prepared by each thread for itself: per (column, block) 32 bytes
// (XOR 0x80 where the offset trick is used) and the scale as fp32. Kept per thread between calls (ggml's worker threads persist).
static inline size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// HEARTH_MATMUL=llamafile (read once) hands every product back to llamafile's kernel: for A/B
// measurements, and for tests that compare the two in one build.
static inline bool enabled() {
    static const bool on = [] {
        const char * v = std::getenv("HEARTH_MATMUL");
        return !(v && std::strcmp(v, "llamafile") == 0);
    }();
    return on;
}

struct Prepared {
    uint8_t * q = nullptr;
    float * d = nullptr;
    size_t cap = 0;  // blocks
    ~Prepared() { std::free(q); std::free(d); }
    bool reserve(size_t blocks) {
        if (blocks <= cap) return true;
        std::free(q); std::free(d);
        q = (uint8_t *) std::aligned_alloc(64, round64(blocks * 32));
        d = (float *) std::aligned_alloc(64, round64(blocks * sizeof(float)));
        if (!q || !d) { std::free(q); std::free(d); q = nullptr; d = nullptr; cap = 0; return false; }
        cap = blocks;
        return true;
    }
};

// llamafile's hsum(__m256) on AVX: the same additions in the same order.
static inline float hsum8(__m256 x) {
    __m128 v = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    return _mm_cvtss_f32(v);
}

static constexpr int kAheadBytes = 8 * 34;  // of the tile's own rows, to prefetch ahead

// A block's 32 weights as signed bytes. Q8_0 as stored. Q5_0 (a low nibble per weight and its fifth
// bit in qh, weight = that 5-bit number - 16) to the same bytes tinyBLAS makes of it: the nibble,
// with the high four bits set (nibble - 16) where the fifth bit is clear.
static inline __m256i weights(const block_q8_0 * b) {
    return _mm256_loadu_si256((const __m256i *) b->qs);
}
static inline __m256i weights(const block_q5_0 * b) {
    const __m128i x = _mm_loadu_si128((const __m128i *) b->qs);
    const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15));
    uint32_t qh;
    std::memcpy(&qh, b->qh, sizeof qh);
#if HEARTH_Q8_GEMM == 512
    return _mm256_or_si256(nib, _mm256_maskz_mov_epi8((__mmask32) ~qh, _mm256_set1_epi8((char) 0xF0)));
#else
    // byte j gets byte j/8 of qh, then tests its bit j%8
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int) qh),
        _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
    const __m256i bit = _mm256_set1_epi64x((long long) 0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_or_si256(nib, _mm256_andnot_si256(set, _mm256_set1_epi8((char) 0xF0)));
#endif
}

#if HEARTH_Q8_GEMM == 512
// Two weight rows' scales at one block, as [d0 x8 | d1 x8].
template <typename TA>
static inline __m512 pair_scales(const TA * a0, const TA * a1) {
    const __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128((int) ((uint32_t) a0->d | ((uint32_t) a1->d << 16))));
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(d));
}

// Two weight rows' blocks in one register, and minus 128 * (sum of each group of four weights).
template <typename TA>
static inline __m512i row_pair(const TA * a0, const TA * a1, __m512i & minus_bias) {
    const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(weights(a0)), weights(a1), 1);
    const __m512i bias = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char) 0x80), w);
    minus_bias = _mm512_sub_epi32(_mm512_setzero_si512(), bias);
    return w;
}

// Measured on a 2-core AMD EPYC (Zen 5), 16-sequence decode steps of Qwen2.5-0.5B: one row pair
// by 16 columns beat two pairs by 8 (63 vs 57 ms); prefetching the rows 8 blocks ahead and the next
// tile's rows (the weights stream from memory once per step) took the step from 74 to 47 ms.
static constexpr int kPairs = 1;    // row pairs per tile
static constexpr int kRows = 2 * kPairs;
static constexpr int kCols = 16;    // columns per tile
static constexpr bool kOffset = true;

// One tile: weight rows ii..ii+kRows-1 against prepared columns jj..jj+RN-1. Each weight block is
// loaded once and used for all RN columns, which gives the loads from memory work to hide behind.
template <typename TA, int RN>
static inline void tile(int64_t k, const TA * A, int64_t lda, const uint8_t * pq,
                        const float * pd, float * C, int64_t ldc, int64_t ii, int64_t jj) {
    __m512 acc[RN][kPairs];
    for (int j = 0; j < RN; ++j) {
        for (int p = 0; p < kPairs; ++p) acc[j][p] = _mm512_setzero_ps();
    }
    const TA * rows[kRows];
    for (int r = 0; r < kRows; ++r) rows[r] = A + lda * (ii + r);
    const uint8_t * xq = pq + 32 * (jj * k);
    const float * xd = pd + jj * k;
    for (int64_t l = 0; l < k; ++l) {
        __m512i w[kPairs], mb[kPairs];
        __m512 d[kPairs];
        for (int p = 0; p < kPairs; ++p) {
            _mm_prefetch((const char *) (rows[2 * p] + l) + kAheadBytes, _MM_HINT_T0);
            _mm_prefetch((const char *) (rows[2 * p + 1] + l) + kAheadBytes, _MM_HINT_T0);
            // the next tile's rows (prefetches never fault, past the last row included)
            _mm_prefetch((const char *) (rows[2 * p] + kRows * lda + l), _MM_HINT_T0);
            _mm_prefetch((const char *) (rows[2 * p + 1] + kRows * lda + l), _MM_HINT_T0);
            w[p] = row_pair(rows[2 * p] + l, rows[2 * p + 1] + l, mb[p]);
            d[p] = pair_scales(rows[2 * p] + l, rows[2 * p + 1] + l);
        }
        for (int j = 0; j < RN; ++j) {
            const int64_t b = j * k + l;
            const __m512i x = _mm512_broadcast_i64x4(_mm256_load_si256((const __m256i *) (xq + 32 * b)));
            const __m512 dx = _mm512_set1_ps(xd[b]);
            for (int p = 0; p < kPairs; ++p) {
                const __m512i s = _mm512_dpbusd_epi32(mb[p], x, w[p]);
                acc[j][p] = _mm512_fmadd_ps(_mm512_mul_ps(d[p], dx), _mm512_cvtepi32_ps(s), acc[j][p]);
            }
        }
    }
    for (int j = 0; j < RN; ++j) {
        float * c = C + ldc * (jj + j) + ii;
        for (int p = 0; p < kPairs; ++p) {
            c[2 * p] = hsum8(_mm512_castps512_ps256(acc[j][p]));
            c[2 * p + 1] = hsum8(_mm512_extractf32x8_ps(acc[j][p], 1));
        }
    }
}

#else
static constexpr int kRows = 1;
static constexpr int kCols = 8;
#if defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__))
#define HEARTH_Q8_VNNI256 1  // 256-bit VPDPBUSD: the offset trick
static constexpr bool kOffset = true;
static inline __m256i dot4(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#endif
}
#else
static constexpr bool kOffset = false;
#endif

// One tile: weight row ii against prepared columns jj..jj+RN-1.
template <typename TA, int RN>
static inline void tile(int64_t k, const TA * A, int64_t lda, const uint8_t * pq,
                        const float * pd, float * C, int64_t ldc, int64_t ii, int64_t jj) {
    __m256 acc[RN];
    for (int j = 0; j < RN; ++j) acc[j] = _mm256_setzero_ps();
    const TA * row = A + lda * ii;
    const uint8_t * xq = pq + 32 * (jj * k);
    const float * xd = pd + jj * k;
    for (int64_t l = 0; l < k; ++l) {
        _mm_prefetch((const char *) (row + l) + kAheadBytes, _MM_HINT_T0);
        _mm_prefetch((const char *) (row + lda + l), _MM_HINT_T0);  // the next row, never faults
        const __m256i w = weights(row + l);
        const __m256 dw = _mm256_set1_ps(GGML_CPU_FP16_TO_FP32(row[l].d));
#if defined(HEARTH_Q8_VNNI256)
        const __m256i mb = _mm256_sub_epi32(
            _mm256_setzero_si256(), dot4(_mm256_setzero_si256(), _mm256_set1_epi8((char) 0x80), w));
#else
        const __m256i aw = _mm256_sign_epi8(w, w);
#endif
        for (int j = 0; j < RN; ++j) {
            const int64_t b = j * k + l;
            const __m256i x = _mm256_load_si256((const __m256i *) (xq + 32 * b));
            const __m256 dx = _mm256_broadcast_ss(xd + b);
#if defined(HEARTH_Q8_VNNI256)
            const __m256i s = dot4(mb, x, w);
#else
            const __m256i s = _mm256_madd_epi16(_mm256_set1_epi16(1),
                                                _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)));
#endif
            acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(s), acc[j]);
        }
    }
    for (int j = 0; j < RN; ++j) C[ldc * (jj + j) + ii] = hsum8(acc[j]);
}

#endif

template <typename TA, int RN>
static inline void tile_upto(int rn, int64_t k, const TA * A, int64_t lda, const uint8_t * pq,
                             const float * pd, float * C, int64_t ldc, int64_t ii, int64_t jj) {
    if constexpr (RN > 0) {
        if (rn == RN) {
            tile<TA, RN>(k, A, lda, pq, pd, C, ldc, ii, jj);
        } else {
            tile_upto<TA, RN - 1>(rn, k, A, lda, pq, pd, C, ldc, ii, jj);
        }
    }
}

// C (m x n, column stride ldc) = A (m rows of k Q8_0 or Q5_0 blocks) x B (n columns of k Q8_0
// blocks). Returns false (nothing written) when the shape does not suit it; the caller falls back.
template <typename TA>
static bool gemm(int64_t m, int64_t n, int64_t k, const TA * A, int64_t lda,
                 const block_q8_0 * B, int64_t ldb, float * C, int64_t ldc, int ith, int nth) {
    if (!enabled() || m % kRows != 0 || n < 2 || k < 1) return false;
    static thread_local Prepared prep;
    if (!prep.reserve((size_t) (n * k))) {
        GGML_ABORT("hearth_q8: out of memory for %lld prepared blocks", (long long) (n * k));
    }
    // Every thread prepares all columns: cheaper than a barrier, and a small part of the work.
    const __m256i flip = _mm256_set1_epi8(kOffset ? (char) 0x80 : 0);
    for (int64_t j = 0; j < n; ++j) {
        const block_q8_0 * bj = B + ldb * j;
        for (int64_t l = 0; l < k; ++l) {
            const __m256i q = _mm256_loadu_si256((const __m256i *) bj[l].qs);
            _mm256_store_si256((__m256i *) (prep.q + 32 * (j * k + l)), _mm256_xor_si256(q, flip));
            prep.d[j * k + l] = GGML_CPU_FP16_TO_FP32(bj[l].d);
        }
    }
    const int64_t row_tiles = m / kRows;
    const int64_t col_tiles = (n + kCols - 1) / kCols;
    // Tiles are numbered row-major (every column tile of some rows, then the next rows) and dealt
    // out in contiguous runs, as tinyBLAS does, so a thread reuses its rows across columns.
    const int64_t tiles = row_tiles * col_tiles;
    const int64_t duty = (tiles + nth - 1) / nth;
    const int64_t start = duty * ith;
    const int64_t end = start + duty < tiles ? start + duty : tiles;
    for (int64_t job = start; job < end; ++job) {
        const int64_t ii = job / col_tiles * kRows;
        const int64_t jj = job % col_tiles * kCols;
        const int rn = (int) (n - jj < kCols ? n - jj : kCols);
        if (rn == kCols) {
            tile<TA, kCols>(k, A, lda, prep.q, prep.d, C, ldc, ii, jj);
        } else {
            tile_upto<TA, kCols - 1>(rn, k, A, lda, prep.q, prep.d, C, ldc, ii, jj);
        }
    }
    return true;
}

}  // namespace hearth_q8

#endif
