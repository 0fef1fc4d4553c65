// The GPU layers' kernels, compiled at run time by NVRTC (src/gpu/mod.rs).
// Each follows the CPU op of the same name (src/model/ops.rs) step for
// step; floating-point results agree within the tolerances stated in
// tests/gpu_kernels.rs (the GPU's expf/sincosf and summation order differ).
// Weights stay in their GGUF block layout (docs/FORMATS.md): a row of K
// weights is K / 32 blocks of
//   Q8_0: f16 d, 32 x int8            (34 bytes)
//   Q4_0: f16 d, 16 bytes of nibbles  (18 bytes; low nibbles are 0..15, high 16..31; value = (q - 8) * d)
//   Q4_1: f16 d, f16 m, 16 bytes      (20 bytes; value = q * d + m)
// and BF16 rows are K x u16.

// No headers: NVRTC compiles this without a CUDA toolkit's include files.

extern "C" {

// An IEEE half (the GGUF block scales) widened to f32, exactly.
__device__ __forceinline__ float f16_at(const unsigned char* p) {
    unsigned int h = (unsigned int)p[0] | ((unsigned int)p[1] << 8);
    unsigned int sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, frac = h & 0x3FFu;
    if (exp == 0x1Fu) return __uint_as_float(sign | 0x7F800000u | (frac << 13));
    if (exp == 0u) return (sign ? -1.0f : 1.0f) * (float)frac * 5.9604644775390625e-8f; // frac * 2^-24
    return __uint_as_float(sign | ((exp + 112u) << 23) | (frac << 13));
}

// out[row] = x[row] / sqrt(mean(x[row]^2) + eps) * w; one block per row.
__global__ void rms_norm(float* out, const float* x, const float* w, float eps, int width) {
    extern __shared__ double partial[];
    const float* xr = x + (size_t)blockIdx.x * width;
    float* yr = out + (size_t)blockIdx.x * width;
    double sum = 0.0;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        float v = xr[i];
        sum += (double)(v * v);
    }
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    float mean = (float)(partial[0] / width);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < width; i += blockDim.x) yr[i] = (xr[i] * scale) * w[i];
}

// Normal RoPE on every head of `rows` rows of `heads * head_dim` values:
// pairs (2i, 2i+1) of the first rope_dim dimensions rotated by
// (pos0 + row) * base^(-2i/rope_dim). One thread per pair.
__global__ void rope(float* x, int rows, int heads, int head_dim, int rope_dim, float base, int pos0) {
    int pairs = rope_dim / 2;
    long total = (long)rows * heads * pairs;
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= total) return;
    int i = (int)(t % pairs);
    long rh = t / pairs;
    int row = (int)(rh / heads);
    // As the CPU op: theta_scale = base^(-2/rope_dim), advanced by repeated
    // multiplication from theta = pos (i steps for pair i).
    float theta_scale = powf(base, -2.0f / (float)rope_dim);
    float theta = (float)(pos0 + row);
    for (int step = 0; step < i; ++step) theta *= theta_scale;
    float s, c;
    sincosf(theta, &s, &c);
    float* p = x + rh * head_dim + 2 * i;
    float x0 = p[0], x1 = p[1];
    p[0] = x0 * c - x1 * s;
    p[1] = x0 * s + x1 * c;
}

// gate = silu(gate) * up.
__global__ void swiglu(float* gate, const float* up, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// a += b.
__global__ void add_in_place(float* a, const float* b, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] += b[i];
}

// Causal grouped-query attention over a KV cache (positions 0..=pos, row r
// of the batch at pos = pos0 + r): query head h reads KV head h / group.
// One block per (head, row): scores q.k * scale into `scores` (n_ctx per
// head and row), the softmax (max subtracted, sum in double), then each
// output dimension as the probability-weighted sum of V, t in order.
__global__ void attend(float* out, const float* q, const float* kc, const float* vc, float* scores,
                       int pos0, int n_head, int group, int head_dim, int kv_dim, float scale, int n_ctx) {
    __shared__ double red[256];
    int h = blockIdx.x, r = blockIdx.y, pos = pos0 + r, hk = h / group;
    const float* qh = q + ((long)r * n_head + h) * head_dim;
    float* s = scores + ((long)r * n_head + h) * n_ctx;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        const float* kt = kc + (long)t * kv_dim + hk * head_dim;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot += qh[d] * kt[d];
        s[t] = dot * scale;
    }
    __syncthreads();
    double mx = -1.0e300;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) mx = fmax(mx, (double)s[t]);
    red[threadIdx.x] = mx;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + k]);
        __syncthreads();
    }
    float m = (float)red[0];
    __syncthreads();
    double sum = 0.0;
    for (int t = threadIdx.x; t <= pos; t += blockDim.x) {
        float e = expf(s[t] - m);
        s[t] = e;
        sum += (double)e;
    }
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] += red[threadIdx.x + k];
        __syncthreads();
    }
    float inv = (float)(1.0 / red[0]);
    float* oh = out + ((long)r * n_head + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int t = 0; t <= pos; ++t) acc += (s[t] * inv) * vc[(long)t * kv_dim + hk * head_dim + d];
        oh[d] = acc;
    }
}

// The weight at index j of a row in each format.
__device__ __forceinline__ float q8_0_at(const unsigned char* row, int j) {
    const unsigned char* b = row + (j / 32) * 34;
    float d = f16_at(b);
    return d * (float)(signed char)b[2 + j % 32];
}
__device__ __forceinline__ float q4_0_at(const unsigned char* row, int j) {
    const unsigned char* b = row + (j / 32) * 18;
    float d = f16_at(b);
    int i = j % 32;
    int q = i < 16 ? (b[2 + i] & 0x0F) : (b[2 + i - 16] >> 4);
    return (float)(q - 8) * d;
}
__device__ __forceinline__ float q4_1_at(const unsigned char* row, int j) {
    const unsigned char* b = row + (j / 32) * 20;
    float d = f16_at(b);
    float m = f16_at(b + 2);
    int i = j % 32;
    int q = i < 16 ? (b[4 + i] & 0x0F) : (b[4 + i - 16] >> 4);
    return (float)q * d + m;
}
__device__ __forceinline__ float bf16_at(const unsigned char* row, int j) {
    unsigned int bits = ((unsigned int)reinterpret_cast<const unsigned short*>(row)[j]) << 16;
    return __uint_as_float(bits);
}

// y[r][n] = sum_j W[n][j] * x[r][j] for `rows` activation rows: one warp
// per (output n, activation row r), lanes striding over K, a warp-shuffle
// reduction. W is N rows of `row_bytes` in its GGUF format.
#define GEMV(NAME, AT)                                                                           \
__global__ void NAME(float* y, const unsigned char* w, const float* x, int n, int k,            \
                     long row_bytes, int rows) {                                                \
    long warp = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;                             \
    int lane = threadIdx.x % 32;                                                                \
    if (warp >= (long)n * rows) return;                                                         \
    int out = (int)(warp % n), r = (int)(warp / n);                                             \
    const unsigned char* wr = w + (long)out * row_bytes;                                        \
    const float* xr = x + (long)r * k;                                                          \
    float sum = 0.0f;                                                                           \
    for (int j = lane; j < k; j += 32) sum += AT(wr, j) * xr[j];                                \
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, off);      \
    if (lane == 0) y[(long)r * n + out] = sum;                                                  \
}
GEMV(gemv_q8_0, q8_0_at)
GEMV(gemv_q4_0, q4_0_at)
GEMV(gemv_q4_1, q4_1_at)
GEMV(gemv_bf16, bf16_at)

}
