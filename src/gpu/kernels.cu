// The GPU layers' kernels, compiled at run time by NVRTC (src/gpu/mod.rs)
// with IEEE arithmetic: no fast math, no FTZ, exact division and square
// root, and no contraction of a * b + c into an FMA (--fmad=false), so each
// expression rounds where the CPU's Rust rounds.
//
// The matmuls give the CPU's bits exactly (docs/NUMERICS.md):
// - quantized weights (Q8_0, Q4_0, Q4_1, in their GGUF block layout,
//   docs/FORMATS.md) multiply activations quantized here exactly as the
//   CPU quantizes them (Q8_0, or Q8_1 for Q4_1), and every output follows
//   the reference order: per 32-weight block in increasing k, an exact
//   integer block sum, then acc = fma(isum, dw * da, acc) (and the Q4_1 min
//   term fma(mw, sa, acc) right after);
// - BF16 weights multiply activations rounded to bf16 as VCVTNEPS2BF16 does,
//   in TDPBF16PS's order with 16 pairs per instruction: two FMA chains
//   (even and odd lanes) from +0 per 32 elements, their sum, then that sum
//   added to the output. DAZ on the inputs and FTZ after each step through
//   the .ftz forms of fma and add (tests/gpu_kernels.rs checks the corner
//   where AMX decides the flush after rounding with an unbounded exponent).
//   NaN comes out as NaN, not with AMX's payload.
// The other steps follow src/model/ops.rs operation for operation. Where
// the CPU calls the C library's expf / sinf / cosf / powf, these compute
// the double function and round it once to f32: the correctly rounded
// value, which glibc returns too except in rare hard cases, so the GPU's
// logits equal the CPU's in almost every bit (tests/placement_scenarios.rs
// measures it: all of them on SmolLM2). RMSNorm and the softmax sum in f64
// in parallel and fall back to the CPU's order where that could change
// the f32 they round to (rms_norm_row says why that is exact).

// No headers: NVRTC compiles this without a CUDA toolkit's include files.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

// An IEEE half (the GGUF block scales) widened to f32, exactly.
__device__ __forceinline__ float f16_to_f32(u32 h) {
    u32 sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, frac = h & 0x3FFu;
    if (exp == 0x1Fu) return __uint_as_float(sign | 0x7F800000u | (frac << 13));
    if (exp == 0u) return (sign ? -1.0f : 1.0f) * (float)frac * 5.9604644775390625e-8f; // frac * 2^-24, exact
    return __uint_as_float(sign | ((exp + 112u) << 23) | (frac << 13));
}

// Block fields sit at 2-byte aligned offsets (block sizes 18, 20, 34 and
// 36 bytes from 256-byte aligned buffers): read them 16 bits at a time.
__device__ __forceinline__ float f16_at(const u8* p) { return f16_to_f32(*(const unsigned short*)p); }
__device__ __forceinline__ u32 word_at(const u8* p) {
    const unsigned short* h = (const unsigned short*)p;
    return (u32)h[0] | ((u32)h[1] << 16);
}

// f32 -> IEEE half bits, round to nearest even (the `half` crate's
// f16::from_f32, which the CPU quantizer stores).
__device__ u32 f32_to_f16(float f) {
    u32 x = __float_as_uint(f);
    u32 sign = (x >> 16) & 0x8000u, ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return sign | 0x7E00u | ((ax >> 13) & 0x3FFu);
    if (ax >= 0x477FF000u) return sign | 0x7C00u; // >= 65520 rounds to inf
    if (ax >= 0x38800000u) {                      // a normal half
        u32 h = ((ax >> 23) - 112u) << 10 | ((ax & 0x7FFFFFu) >> 13);
        u32 rem = ax & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;
        return sign | h;
    }
    if (ax <= 0x33000000u) return sign; // <= 2^-25: rounds to zero (2^-25 is a tie, to even)
    u32 shift = 126u - (ax >> 23), mant = (ax & 0x7FFFFFu) | 0x800000u;
    u32 h = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h += 1u;
    return sign | h;
}

__device__ __forceinline__ void store_f16(u8* p, float v) {
    u32 h = f32_to_f16(v);
    p[0] = (u8)h;
    p[1] = (u8)(h >> 8);
}

__device__ __forceinline__ bool is_finite(float v) { return (__float_as_uint(v) & 0x7F800000u) != 0x7F800000u; }

// The C library's functions, correctly rounded through double.
__device__ __forceinline__ float exp_f32(float x) { return (float)exp((double)x); }

// Exact integer dot product of four signed bytes, plus c.
__device__ __forceinline__ int dp4a(int a, int b, int c) {
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// A load that skips L1 (PTX ld.global.cg).
__device__ __forceinline__ float load_l2(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// Whether every value within m * slack of m (m >= 0) rounds to the same
// f32 as m: no f32 rounding midpoint lies in that interval. (The sum of
// two adjacent floats is exact in f64, and so is its half.)
__device__ bool rounds_alike(double m, double slack) {
    if (!(m <= 3.0e38)) return false; // NaN, inf, or near f32 overflow
    float f = (float)m;
    double below = ((double)f + (double)nextafterf(f, -3.4e38f)) * 0.5;
    double above = ((double)f + (double)nextafterf(f, 3.4e38f)) * 0.5;
    double d = m * slack;
    return m - d > below && m + d < above;
}

// out = x * (1 / sqrt(mean(x^2) + eps)) * w for one row, by the calling
// block (width <= 8192). The CPU sums the squares (each an f32 product)
// in f64 in index order; here the block sums them in parallel, in another
// order. Both sums have nonnegative terms, so each is within (n - 1) 2^-53
// of the exact sum (the standard bound for any order), and their means
// within about 2 (n + 1) 2^-53 of each other: when no f32 rounding
// midpoint lies within n 2^-50 of the parallel mean, both round to the
// same f32 mean and the result is the CPU's. Otherwise (about one row in
// 2^16 at n = 576, or a NaN or inf) one thread sums in the CPU's order.
#define MAX_NORM_WIDTH 8192
// FROM_L2: x was written by other blocks of this launch (a GEMV's tail),
// so it is read past this SM's L1, which is not coherent with theirs.
template <bool FROM_L2 = false>
__device__ void rms_norm_row(float* out, const float* x, const float* w, float eps, int width) {
    __shared__ float row[MAX_NORM_WIDTH];
    __shared__ double partial[32];
    __shared__ float scale;
    double part = 0.0;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        float v = FROM_L2 ? load_l2(x + i) : x[i];
        row[i] = v;
        part += (double)(v * v);
    }
    for (int off = 16; off > 0; off >>= 1) part += __shfl_xor_sync(0xffffffffu, part, off);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = part;
    __syncthreads();
    if (threadIdx.x == 0) {
        double sum = 0.0;
        for (int i = 0; i < (int)(blockDim.x + 31) / 32; ++i) sum += partial[i];
        double mean = sum / (double)width;
        if (!rounds_alike(mean, (double)width * 8.8817841970012523e-16)) { // n 2^-50
            sum = 0.0;
            for (int i = 0; i < width; ++i) sum += (double)(row[i] * row[i]);
            mean = sum / (double)width;
        }
        scale = 1.0f / sqrtf((float)mean + eps);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < width; i += blockDim.x) out[i] = (row[i] * scale) * w[i];
}

// silu(g) * u, silu(g) = g / (1 + e^-g).
__device__ __forceinline__ float swiglu_one(float g, float u) { return g / (1.0f + exp_f32(-g)) * u; }

extern "C" {

// One block per row.
__global__ void rms_norm(float* out, const float* x, const float* w, float eps, int width) {
    rms_norm_row(out + (long)blockIdx.x * width, x + (long)blockIdx.x * width, w, eps, width);
}

} // extern "C"

// One block of 32 activations to Q8_0 (34 bytes) or Q8_1 (36, with_s)
// by one warp (lane j holds x_j), exactly as the CPU's quantizer
// (verify/src/quant.rs): amax = max |x| (exact in any order),
// d = amax / 127, id = 1 / d (0 when d is 0), q = round-half-away(x * id)
// saturated to i8, d stored as f16; Q8_1's s = f16(f32(sum q) * d) with
// the f32 d. A block with a NaN or inf is poisoned: d (and s) = 0x7E00,
// every q = 0.
__device__ void quantize_block(u8* o, float v, int lane, int with_s) {
    int quants = with_s ? 4 : 2;
    if (!__all_sync(0xffffffffu, is_finite(v))) {
        o[quants + lane] = 0;
        if (lane < quants) o[lane] = (lane % 2 == 0) ? 0x00 : 0x7E;
        return;
    }
    float amax = fabsf(v);
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    float d = amax / 127.0f;
    float id = d == 0.0f ? 0.0f : 1.0f / d;
    float r = roundf(v * id);
    int q = r != r ? 0 : (r >= 127.0f ? 127 : (r <= -128.0f ? -128 : (int)r));
    o[quants + lane] = (u8)(signed char)q;
    int sum = q;
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) {
        store_f16(o, d);
        if (with_s) store_f16(o + 2, (float)sum * d);
    }
}

// f32 -> bf16 bits as VCVTNEPS2BF16: zero and denormals to a signed zero,
// NaN truncated with the quiet bit set, the rest rounded to nearest even.
__device__ __forceinline__ u16 bf16_bits(float x) {
    u32 bits = __float_as_uint(x);
    u32 exp = bits & 0x7F800000u, frac = bits & 0x7FFFFFu;
    if (exp == 0u) return (u16)((bits >> 16) & 0x8000u);
    if (exp == 0x7F800000u && frac != 0u) return (u16)((bits >> 16) | 0x40u);
    return (u16)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

// The activation formats: 0 = Q8_0, 1 = Q8_1, 2 = bf16.
// One row of `width` values (a multiple of 32) quantized by the calling
// block's warps, block b by warp b % warps.
__device__ void quantize_row(u8* out, const float* x, int width, int kind) {
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (kind == 2) {
        u16* o = (u16*)out;
        for (int i = threadIdx.x; i < width; i += blockDim.x) o[i] = bf16_bits(x[i]);
        return;
    }
    int bytes = kind == 1 ? 36 : 34;
    for (int b = warp; b < width / 32; b += warps) quantize_block(out + (long)b * bytes, x[32 * b + lane], lane, kind);
}

__device__ __forceinline__ long activation_row_bytes(int width, int kind) {
    return kind == 2 ? 2L * width : (long)(width / 32) * (kind == 1 ? 36 : 34);
}

extern "C" {

// Activation rows to their format (one block per row).
__global__ void quantize_rows(u8* out, const float* x, int width, int kind) {
    quantize_row(out + blockIdx.x * activation_row_bytes(width, kind), x + (long)blockIdx.x * width, width, kind);
}

// RMSNorm into h (as rms_norm) and h quantized for the next matmul.
__global__ void rms_norm_quantize(float* h, u8* act, const float* x, const float* w, float eps, int width, int kind) {
    rms_norm_row(h + (long)blockIdx.x * width, x + (long)blockIdx.x * width, w, eps, width);
    __syncthreads();
    quantize_row(act + blockIdx.x * activation_row_bytes(width, kind), h + (long)blockIdx.x * width, width, kind);
}

// SwiGLU on one row (as swiglu) and the result quantized for the down
// projection.
__global__ void swiglu_quantize(float* gate, const float* up, u8* act, int width, int kind) {
    float* g = gate + (long)blockIdx.x * width;
    const float* u = up + (long)blockIdx.x * width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) g[i] = swiglu_one(g[i], u[i]);
    __syncthreads();
    quantize_row(act + blockIdx.x * activation_row_bytes(width, kind), g, width, kind);
}

} // extern "C"

extern "C" {

// Normal RoPE on the query and key heads of `rows` rows (row r at position
// pos0 + r, pos0 read from device memory so that a captured decode step
// takes the current one; nothing happens if the rows would pass n_ctx),
// then the keys and values of those rows into the KV cache at their
// positions. Pairs (2i, 2i+1) of the first rope_dim dimensions turn
// by pos * theta_scale^i, theta_scale = base^(-2 / rope_dim) (computed by
// the host with the CPU's own powf, so it is the CPU's value), the angle
// advanced by repeated f32 multiplication as the CPU does. One thread per
// pair of a query or key head, then one per value element.
__global__ void rope_into_cache(float* q, const float* k, const float* v, float* kc, float* vc, int rows,
                                int n_head, int n_head_kv, int head_dim, int rope_dim, float theta_scale,
                                const int* position, int n_ctx) {
    int pos0 = *position;
    if (pos0 < 0 || pos0 + rows > n_ctx) return;
    int pairs = head_dim / 2, kv_dim = n_head_kv * head_dim;
    long rotations = (long)rows * (n_head + n_head_kv) * pairs;
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rotations) {
        long e = t - rotations;
        if (e >= (long)rows * kv_dim) return;
        int r = (int)(e / kv_dim), j = (int)(e % kv_dim);
        vc[(long)(pos0 + r) * kv_dim + j] = v[e];
        return;
    }
    int i = (int)(t % pairs);
    long rh = t / pairs;
    int heads = n_head + n_head_kv, r = (int)(rh / heads), h = (int)(rh % heads);
    const float* src;
    float* dst;
    if (h < n_head) {
        src = q + ((long)r * n_head + h) * head_dim + 2 * i;
        dst = (float*)src;
    } else {
        src = k + (long)r * kv_dim + (h - n_head) * head_dim + 2 * i;
        dst = kc + (long)(pos0 + r) * kv_dim + (h - n_head) * head_dim + 2 * i;
    }
    float x0 = src[0], x1 = src[1];
    if (2 * i < rope_dim) {
        float theta = (float)(pos0 + r);
        for (int step = 0; step < i; ++step) theta *= theta_scale;
        float s = (float)sin((double)theta), c = (float)cos((double)theta);
        dst[0] = x0 * c - x1 * s;
        dst[1] = x0 * s + x1 * c;
    } else {
        dst[0] = x0;
        dst[1] = x1;
    }
}

// gate = silu(gate) * up, silu(g) = g / (1 + e^-g).
__global__ void swiglu(float* gate, const float* up, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        gate[i] = swiglu_one(gate[i], up[i]);
    }
}

// a += b.
__global__ void add_in_place(float* a, const float* b, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] += b[i];
}

// The CPU's attention dot product (src/model/ops.rs `dot`): 16 running
// sums, element i into sum i % 16, then a fixed pairwise tree.
__device__ float dot16(const float* a, const float* b, int n) {
    float acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = 0.0f;
    // Sixteen at a time, so each sum's index is known at compile time (the
    // sums stay in registers) and the loads of a group issue together.
    for (int i0 = 0; i0 < n; i0 += 16) {
#pragma unroll
        for (int c = 0; c < 16; ++c)
            if (i0 + c < n) acc[c] += a[i0 + c] * b[i0 + c];
    }
    for (int width = 8; width >= 1; width /= 2)
        for (int i = 0; i < width; ++i) acc[i] += acc[i + width];
    return acc[0];
}

// Causal grouped-query attention over the KV cache (positions 0..=pos, row
// r of the batch at pos = pos0 + r, pos0 read from device memory as in
// rope_into_cache); query head h reads KV head h / group. One warp per
// (head, row), four to a block, no block-wide barriers: lane j takes
// positions j, j + 32, ...: scores dot(q, k_t) * scale into `scores`
// (n_ctx per head and row), the softmax (max subtracted, e^x, the f64 sum,
// then one f32 scale 1 / sum), then output dimensions j, j + 32, ... as the
// sum over t in order of p_t * v_t, as the CPU computes them. The CPU sums
// the softmax in t order; the warp sums in parallel and, as rms_norm_row
// does, falls back to t order when the two could round to different f32
// scales (the terms are positive, so the same bound holds). With act_kind
// >= 0 (head_dim a multiple of 32) the output is also quantized for the
// next matmul, a 32-value block per pass of the warp.
__global__ void attend(float* out, const float* q, const float* kc, const float* vc, float* scores,
                       const int* position, int n_head, int group, int head_dim, int kv_dim, float scale,
                       int n_ctx, u8* act, int act_kind) {
    int pos0 = *position;
    int rows = (int)gridDim.y;
    if (pos0 < 0 || pos0 + rows > n_ctx) return;
    int lane = threadIdx.x % 32;
    int h = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, r = blockIdx.y;
    if (h >= n_head) return; // a whole warp
    int pos = pos0 + r, hk = h / group;
    const float* qh = q + ((long)r * n_head + h) * head_dim;
    const float* kh = kc + hk * head_dim;
    const float* vh = vc + hk * head_dim;
    float* s = scores + ((long)r * n_head + h) * n_ctx;
    float mx = -__int_as_float(0x7f800000);
    for (int t = lane; t <= pos; t += 32) {
        s[t] = dot16(qh, kh + (long)t * kv_dim, head_dim) * scale;
        mx = fmaxf(mx, s[t]);
    }
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    double sum = 0.0;
    for (int t = lane; t <= pos; t += 32) {
        float e = exp_f32(s[t] - mx);
        s[t] = e;
        sum += (double)e;
    }
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    // The butterfly leaves each lane its own order of the same terms: take
    // lane 0's, so every lane scales by the same value.
    sum = __shfl_sync(0xffffffffu, sum, 0);
    __syncwarp(); // every lane's e_t is visible to the others
    double inv = 1.0 / sum;
    if (!rounds_alike(inv, (double)(pos + 1) * 8.8817841970012523e-16)) { // n 2^-50; the same in every lane
        double ordered = 0.0;
        for (int t = 0; t <= pos; ++t) ordered += (double)s[t];
        inv = 1.0 / ordered;
    }
    float p_scale = (float)inv;
    __syncwarp();
    for (int t = lane; t <= pos; t += 32) s[t] *= p_scale;
    __syncwarp();
    float* oh = out + ((long)r * n_head + h) * head_dim;
    u8* act_row = act_kind < 0 ? act : act + r * activation_row_bytes(n_head * head_dim, act_kind);
    for (int d0 = 0; d0 < head_dim; d0 += 32) {
        int d = d0 + lane;
        float acc = 0.0f;
        if (d < head_dim) {
            // Unrolled so that the cache loads of several t are in flight
            // at once; the sum still adds in t order.
#pragma unroll 8
            for (int t = 0; t <= pos; ++t) acc += s[t] * vh[(long)t * kv_dim + d];
            oh[d] = acc;
        }
        long e = (long)h * head_dim + d;
        if (act_kind == 2) {
            if (d < head_dim) ((u16*)act_row)[e] = bf16_bits(acc);
        } else if (act_kind >= 0) {
            quantize_block(act_row + (e / 32) * (act_kind == 1 ? 36 : 34), acc, lane, act_kind);
        }
    }
}

} // extern "C"

// ---- Matmuls ----------------------------------------------------------
//
// y[r][o] (+)= dot(activation row r, weight row o) for `rows` activation
// rows and n weight rows of k. Two shapes of the same arithmetic:
// - gemv_*: one warp per (output, row), lanes taking blocks 64 at a time
//   (lane j blocks j and j + 32 of each pass: exact integer or two-chain
//   partial results), then every lane runs the block-order chain over the
//   lanes' results by shuffles; optionally a tail (gemv_tail) in the block
//   that finishes last. For generation (few rows).
// - gemm_*: for the block formats a 32-row x 64-output tile per block of
//   256 threads, the blocks of k loaded (decoded to int8) into shared
//   memory in turn, each thread advancing 2 x 4 outputs one block at a
//   time; for BF16 a 32 x 32 tile per 128 threads (gemm_bf16_rows). For
//   prompts.
// `accumulate` adds the result to y (a residual connection: x + proj in one
// rounding, as the CPU's add after its matmul).

// One 32-weight block of a quantized weight row, decoded: quants (Q4_0
// nibble - 8, Q4_1 nibble, Q8_0 the i8), d, and Q4_1's m.
struct QuantBlock {
    int q[8]; // 32 signed bytes, four per int
    float d, m;
};

template <int FORMAT> struct WeightFormat;
// FORMAT 0: Q8_0 (34 bytes), 1: Q4_0 (18), 2: Q4_1 (20).
template <> struct WeightFormat<0> {
    static const int bytes = 34;
    static const bool has_min = false;
    __device__ static void decode(const u8* b, QuantBlock& out) {
        out.d = f16_at(b);
        out.m = 0.0f;
        for (int w = 0; w < 8; ++w) out.q[w] = (int)word_at(b + 2 + 4 * w);
    }
};
// BIAS 0 or 8.
template <int BIAS> __device__ void decode_nibbles(const u8* qs, QuantBlock& out) {
    // Element e < 16 is the low nibble of byte e, element 16 + e its high
    // nibble; four bytes per word. Minus 8 byte-wise without borrows: a
    // nibble u + 0x78 stays below 0x100, and flipping bit 7 leaves u - 8 as
    // a two's complement byte.
    for (int w = 0; w < 4; ++w) {
        u32 x = word_at(qs + 4 * w);
        u32 lo = x & 0x0F0F0F0Fu, hi = (x >> 4) & 0x0F0F0F0Fu;
        if (BIAS == 8) {
            lo = (lo + 0x78787878u) ^ 0x80808080u;
            hi = (hi + 0x78787878u) ^ 0x80808080u;
        }
        out.q[w] = (int)lo;
        out.q[4 + w] = (int)hi;
    }
}
template <> struct WeightFormat<1> {
    static const int bytes = 18;
    static const bool has_min = false;
    __device__ static void decode(const u8* b, QuantBlock& out) {
        out.d = f16_at(b);
        out.m = 0.0f;
        decode_nibbles<8>(b + 2, out);
    }
};
template <> struct WeightFormat<2> {
    static const int bytes = 20;
    static const bool has_min = true;
    __device__ static void decode(const u8* b, QuantBlock& out) {
        out.d = f16_at(b);
        out.m = f16_at(b + 2);
        decode_nibbles<0>(b + 4, out);
    }
};

// An activation block: Q8_0 (34 bytes: d, q) or Q8_1 (36: d, s, q). `m`
// holds Q8_1's s.
template <bool WITH_S> __device__ void decode_activations(const u8* b, QuantBlock& out) {
    const int at = WITH_S ? 4 : 2;
    out.d = f16_at(b);
    out.m = WITH_S ? f16_at(b + 2) : 0.0f;
    for (int w = 0; w < 8; ++w) out.q[w] = (int)word_at(b + at + 4 * w);
}

// One block's step of the reference order.
template <bool HAS_MIN> __device__ __forceinline__ float quant_step(float acc, const QuantBlock& w, const QuantBlock& a) {
    int isum = 0;
    for (int i = 0; i < 8; ++i) isum = dp4a(w.q[i], a.q[i], isum);
    acc = fmaf((float)isum, w.d * a.d, acc);
    if (HAS_MIN) acc = fmaf(w.m, a.m, acc);
    return acc;
}

// Output o of activation row r, by one warp.
template <int FORMAT>
__device__ void gemv_quant(float* y, const u8* w, const u8* a, int n, int k, int o, int r, int accumulate) {
    typedef WeightFormat<FORMAT> F;
    const bool with_s = F::has_min;
    const int a_bytes = with_s ? 36 : 34;
    int lane = threadIdx.x % 32, nb = k / 32;
    const u8* wr = w + (long)o * nb * F::bytes;
    const u8* ar = a + (long)r * nb * a_bytes;
    float acc = 0.0f;
    // 64 blocks a pass, two per lane, all their loads issued before any
    // is used (one memory round trip for k up to 2048).
    for (int b0 = 0; b0 < nb; b0 += 64) {
        QuantBlock wb[2], ab[2];
        for (int h = 0; h < 2; ++h) {
            int b = b0 + lane + 32 * h;
            if (b < nb) {
                F::decode(wr + (long)b * F::bytes, wb[h]);
                decode_activations<with_s>(ar + (long)b * a_bytes, ab[h]);
            }
        }
        int isum[2] = {0, 0};
        float scale[2] = {0.0f, 0.0f}, mw[2] = {0.0f, 0.0f}, sa[2] = {0.0f, 0.0f};
        for (int h = 0; h < 2; ++h) {
            if (b0 + lane + 32 * h < nb) {
                for (int i = 0; i < 8; ++i) isum[h] = dp4a(wb[h].q[i], ab[h].q[i], isum[h]);
                scale[h] = wb[h].d * ab[h].d;
                mw[h] = wb[h].m;
                sa[h] = ab[h].m;
            }
        }
        int count = min(64, nb - b0);
        for (int j = 0; j < count; ++j) {
            int h = j / 32, src = j % 32; // the same for every lane
            acc = fmaf((float)__shfl_sync(0xffffffffu, h ? isum[1] : isum[0], src),
                       __shfl_sync(0xffffffffu, h ? scale[1] : scale[0], src), acc);
            if (with_s)
                acc = fmaf(__shfl_sync(0xffffffffu, h ? mw[1] : mw[0], src),
                           __shfl_sync(0xffffffffu, h ? sa[1] : sa[0], src), acc);
        }
    }
    if (lane == 0) {
        float* out = y + (long)r * n + o;
        *out = accumulate ? *out + acc : acc;
    }
}

// The GEMV entries take up to three weight matrices of the same k that
// read the same activations (Q, K and V; gate and up), one launch for all:
// warp w of a launch is output w % (n0 + n1 + n2) of row w / (n0 + n1 + n2).
struct Targets {
    float* y[3];
    const u8* w[3];
    int n[3];
};

__device__ __forceinline__ bool target_of(long warp, int rows, const Targets& t, int& which, int& o, int& r) {
    int total = t.n[0] + t.n[1] + t.n[2];
    if (warp >= (long)total * rows) return false;
    r = (int)(warp / total);
    o = (int)(warp % total);
    which = o < t.n[0] ? 0 : (o < t.n[0] + t.n[1] ? 1 : 2);
    for (int i = 0; i < which; ++i) o -= t.n[i];
    return true;
}

// A thread's 2 x 4 outputs of a tile, from row r and output o on, inside
// rows x n (accumulated onto y or overwriting it).
__device__ void store_tile(float* y, const float (&acc)[2][4], int r, int o, int n, int rows, int accumulate) {
    for (int i = 0; i < 2 && r + i < rows; ++i)
        for (int j = 0; j < 4 && o + j < n; ++j) {
            float* out = y + (long)(r + i) * n + o + j;
            *out = accumulate ? *out + acc[i][j] : acc[i][j];
        }
}

#define TILE_ROWS 32
#define TILE_OUTS 64

template <int FORMAT>
__device__ void gemm_quant(float* y, const u8* w, const u8* a, int n, int k, int rows, int accumulate) {
    typedef WeightFormat<FORMAT> F;
    const bool with_s = F::has_min;
    const int a_bytes = with_s ? 36 : 34;
    __shared__ QuantBlock ws[TILE_OUTS], as[TILE_ROWS];
    int o0 = blockIdx.x * TILE_OUTS, r0 = blockIdx.y * TILE_ROWS, nb = k / 32;
    int to = (threadIdx.x % 16) * 4, tr = (threadIdx.x / 16) * 2;
    float acc[2][4];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (int b = 0; b < nb; ++b) {
        if (threadIdx.x < TILE_OUTS) {
            int o = o0 + threadIdx.x;
            if (o < n) F::decode(w + ((long)o * nb + b) * F::bytes, ws[threadIdx.x]);
        } else if (threadIdx.x < TILE_OUTS + TILE_ROWS) {
            int r = r0 + threadIdx.x - TILE_OUTS;
            if (r < rows) decode_activations<with_s>(a + ((long)r * nb + b) * a_bytes, as[threadIdx.x - TILE_OUTS]);
        }
        __syncthreads();
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 4; ++j) acc[i][j] = quant_step<with_s>(acc[i][j], ws[to + j], as[tr + i]);
        __syncthreads();
    }
    store_tile(y, acc, r0 + tr, o0 + to, n, rows, accumulate);
}

// ---- BF16: TDPBF16PS's order, 16 pairs per step -------------------------

// FMA and add with the FTZ modifier: subnormal inputs read as zero (the
// instruction's DAZ) and a subnormal result becomes zero of its sign (its
// FTZ), in the one hardware instruction (PTX ISA, fma.ftz.f32 / add.ftz.f32).
__device__ __forceinline__ float fma_ftz(float a, float b, float c) {
    float d;
    asm("fma.rn.ftz.f32 %0, %1, %2, %3;" : "=f"(d) : "f"(a), "f"(b), "f"(c));
    return d;
}
__device__ __forceinline__ float add_ftz(float a, float b) {
    float d;
    asm("add.rn.ftz.f32 %0, %1, %2;" : "=f"(d) : "f"(a), "f"(b));
    return d;
}

// The two bf16 of a little-endian word as f32: element 2p (low half) and
// element 2p + 1 (high half) of a pair.
__device__ __forceinline__ float bf16_low(u32 pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float bf16_high(u32 pair) { return __uint_as_float(pair & 0xFFFF0000u); }

// The sum of one 32-element chunk (16-byte aligned): even and odd lanes in
// two FMA chains from +0, then even + odd.
__device__ __forceinline__ float bf16_chunk(const u16* w, const u16* a) {
    const uint4* w4 = (const uint4*)w;
    const uint4* a4 = (const uint4*)a;
    float even = 0.0f, odd = 0.0f;
    for (int q = 0; q < 4; ++q) {
        uint4 wq = w4[q], aq = a4[q];
        u32 wp[4] = {wq.x, wq.y, wq.z, wq.w}, ap[4] = {aq.x, aq.y, aq.z, aq.w};
        for (int i = 0; i < 4; ++i) {
            even = fma_ftz(bf16_low(ap[i]), bf16_low(wp[i]), even);
            odd = fma_ftz(bf16_high(ap[i]), bf16_high(wp[i]), odd);
        }
    }
    return add_ftz(even, odd);
}

__device__ void gemv_bf16_rows(float* y, const u16* w, const u16* a, int n, int k, int o, int r, int accumulate) {
    int lane = threadIdx.x % 32, nb = k / 32;
    const u16* wr = w + (long)o * k;
    const u16* ar = a + (long)r * k;
    float acc = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 32) {
        int b = b0 + lane;
        float t = b < nb ? bf16_chunk(wr + 32 * b, ar + 32 * b) : 0.0f;
        int count = min(32, nb - b0);
        for (int j = 0; j < count; ++j) acc = add_ftz(acc, __shfl_sync(0xffffffffu, t, j));
    }
    if (lane == 0) {
        float* out = y + (long)r * n + o;
        *out = accumulate ? *out + acc : acc;
    }
}

// The BF16 GEMM's tile: 32 outputs x 32 rows per block of 128 threads, each
// thread 2 rows x 4 outputs; k moves through shared memory 96 at a time
// (three TDPBF16PS chunks), the next stage's loads in flight while the
// current one is summed. Small tiles because prompts are short: 128 rows
// x 576 outputs is already 72 blocks.
#define BF16_OUTS 32
#define BF16_ROWS 32
#define BF16_THREADS 128
#define BF16_STAGE_CHUNKS 3

// One thread's share of a stage: up to three 8-element pieces of the
// weight tile and of the activation tile.
struct Bf16Stage {
    uint4 w[BF16_STAGE_CHUNKS], a[BF16_STAGE_CHUNKS];
};

// Piece j of a stage of `chunks` chunks: tile row e % 32 (so a warp's
// stores into the k-major tiles hit 32 banks), elements 8 * (e / 32) on.
__device__ __forceinline__ void bf16_fetch(Bf16Stage& s, const u16* w, const u16* a, int o0, int r0, int n, int rows,
                                           int k, int c0, int chunks) {
    for (int j = 0; j < chunks; ++j) {
        int e = threadIdx.x + BF16_THREADS * j, row = e % 32, at = 32 * c0 + 8 * (e / 32);
        uint4 zero = {0u, 0u, 0u, 0u};
        s.w[j] = o0 + row < n ? *(const uint4*)(w + (long)(o0 + row) * k + at) : zero;
        s.a[j] = r0 + row < rows ? *(const uint4*)(a + (long)(r0 + row) * k + at) : zero;
    }
}

__device__ void gemm_bf16_rows(float* y, const u16* w, const u16* a, int n, int k, int rows, int accumulate) {
    // k-major: a thread's 4 outputs (2 rows) at one k are one 16-byte
    // (8-byte) shared load. Rows padded to 36 floats: 16-byte aligned.
    __shared__ __align__(16) float ws[32 * BF16_STAGE_CHUNKS][BF16_OUTS + 4];
    __shared__ __align__(16) float as[32 * BF16_STAGE_CHUNKS][BF16_ROWS + 4];
    int o0 = blockIdx.x * BF16_OUTS, r0 = blockIdx.y * BF16_ROWS, nb = k / 32;
    int to = (threadIdx.x % 8) * 4, tr = (threadIdx.x / 8) * 2;
    float acc[2][4];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    Bf16Stage next;
    int c0 = 0, chunks = min(BF16_STAGE_CHUNKS, nb);
    bf16_fetch(next, w, a, o0, r0, n, rows, k, c0, chunks);
    while (c0 < nb) {
        for (int j = 0; j < chunks; ++j) {
            int e = threadIdx.x + BF16_THREADS * j, row = e % 32, at = 8 * (e / 32);
            u32 wp[4] = {next.w[j].x, next.w[j].y, next.w[j].z, next.w[j].w};
            u32 ap[4] = {next.a[j].x, next.a[j].y, next.a[j].z, next.a[j].w};
            for (int i = 0; i < 4; ++i) {
                ws[at + 2 * i][row] = bf16_low(wp[i]);
                ws[at + 2 * i + 1][row] = bf16_high(wp[i]);
                as[at + 2 * i][row] = bf16_low(ap[i]);
                as[at + 2 * i + 1][row] = bf16_high(ap[i]);
            }
        }
        __syncthreads();
        int c1 = c0 + chunks, chunks1 = min(BF16_STAGE_CHUNKS, nb - c1);
        if (chunks1 > 0) bf16_fetch(next, w, a, o0, r0, n, rows, k, c1, chunks1);
        for (int c = 0; c < chunks; ++c) {
            float even[2][4], odd[2][4];
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) even[i][j] = odd[i][j] = 0.0f;
            for (int p = 0; p < 16; ++p) {
                int kk = 32 * c + 2 * p;
                float4 we = *(const float4*)&ws[kk][to], wo = *(const float4*)&ws[kk + 1][to];
                float2 ae = *(const float2*)&as[kk][tr], ao = *(const float2*)&as[kk + 1][tr];
                float wev[4] = {we.x, we.y, we.z, we.w}, wov[4] = {wo.x, wo.y, wo.z, wo.w};
                float aev[2] = {ae.x, ae.y}, aov[2] = {ao.x, ao.y};
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 4; ++j) {
                        even[i][j] = fma_ftz(aev[i], wev[j], even[i][j]);
                        odd[i][j] = fma_ftz(aov[i], wov[j], odd[i][j]);
                    }
            }
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = add_ftz(acc[i][j], add_ftz(even[i][j], odd[i][j]));
        }
        __syncthreads();
        c0 = c1;
        chunks = chunks1;
    }
    store_tile(y, acc, r0 + tr, o0 + to, n, rows, accumulate);
}

// What a GEMV launch does once every output is written, in the block that
// finishes last (the threadfence-reduction pattern): the step that reads
// the whole output row, which would otherwise be a launch of its own.
// op 0: nothing; 1: RMSNorm of y0 (n0 wide) by norm_w into out, then out
// quantized into act; 2: SwiGLU of gate y0 and up y1 (n0 wide) in place,
// then quantized into act.
struct Tail {
    int op;
    unsigned* done; // blocks finished; the last resets it to 0
    float* out;
    u8* act;
    const float* norm_w;
    float eps;
    int width;
    int kind;
};

__device__ void gemv_tail(const Tail& t, float* y0, const float* y1, int rows) {
    if (t.op == 0) return;
    __shared__ bool last;
    __threadfence(); // this block's outputs are visible before it counts itself
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(t.done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    long row_bytes = activation_row_bytes(t.width, t.kind);
    for (int r = 0; r < rows; ++r) {
        float* y = y0 + (long)r * t.width;
        if (t.op == 1) {
            rms_norm_row<true>(t.out + (long)r * t.width, y, t.norm_w, t.eps, t.width);
            __syncthreads();
            quantize_row(t.act + r * row_bytes, t.out + (long)r * t.width, t.width, t.kind);
        } else {
            const float* u = y1 + (long)r * t.width;
            for (int i = threadIdx.x; i < t.width; i += blockDim.x) y[i] = swiglu_one(load_l2(y + i), load_l2(u + i));
            __syncthreads();
            quantize_row(t.act + r * row_bytes, y, t.width, t.kind);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *t.done = 0u;
}

extern "C" {

#define GEMV_ENTRY(NAME, CALL)                                                                         \
    __global__ void gemv_##NAME(float* y0, const u8* w0, int n0, float* y1, const u8* w1, int n1, float* y2,  \
                                const u8* w2, int n2, const u8* a, int k, int rows, int acc, Tail tail) {    \
        Targets t = {{y0, y1, y2}, {w0, w1, w2}, {n0, n1, n2}};                                              \
        int which, o, r;                                                                                     \
        long warp = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;                                      \
        if (target_of(warp, rows, t, which, o, r)) CALL;                                                     \
        gemv_tail(tail, y0, y1, rows);                                                                       \
    }
GEMV_ENTRY(q8_0, (gemv_quant<0>(t.y[which], t.w[which], a, t.n[which], k, o, r, acc)))
GEMV_ENTRY(q4_0, (gemv_quant<1>(t.y[which], t.w[which], a, t.n[which], k, o, r, acc)))
GEMV_ENTRY(q4_1, (gemv_quant<2>(t.y[which], t.w[which], a, t.n[which], k, o, r, acc)))
GEMV_ENTRY(bf16, (gemv_bf16_rows(t.y[which], (const u16*)t.w[which], (const u16*)a, t.n[which], k, o, r, acc)))

__global__ void gemm_q8_0(float* y, const u8* w, const u8* a, int n, int k, int rows, int acc) {
    gemm_quant<0>(y, w, a, n, k, rows, acc);
}
__global__ void gemm_q4_0(float* y, const u8* w, const u8* a, int n, int k, int rows, int acc) {
    gemm_quant<1>(y, w, a, n, k, rows, acc);
}
__global__ void gemm_q4_1(float* y, const u8* w, const u8* a, int n, int k, int rows, int acc) {
    gemm_quant<2>(y, w, a, n, k, rows, acc);
}
__global__ void gemm_bf16(float* y, const u8* w, const u8* a, int n, int k, int rows, int acc) {
    gemm_bf16_rows(y, (const u16*)w, (const u16*)a, n, k, rows, acc);
}

} // extern "C"
