// LayerNorm over the last axis as PyTorch: biased variance, eps inside the square root. One
// block per row; statistics are two-pass (mean, then squared deviations) in f32.

template <typename T>
__device__ float2 row_stats(const T* xr, i64 c, float eps) {
  float s = 0.f;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) s += to_f32(xr[j]);
  float mean = block_sum(s) / (float)c;
  float q = 0.f;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) { float d = to_f32(xr[j]) - mean; q += d * d; }
  float var = block_sum(q) / (float)c;
  return make_float2(mean, rsqrtf(var + eps));
}

template <typename T>
__device__ void layer_norm_forward(const T* x, const T* w, const T* b, T* y, i64 c, float eps) {
  i64 off = blockIdx.x * c;
  float2 st = row_stats(x + off, c, eps);
  for (i64 j = threadIdx.x; j < c; j += blockDim.x)
    y[off + j] = from_f32<T>((to_f32(x[off + j]) - st.x) * st.y * to_f32(w[j]) + to_f32(b[j]));
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w.
template <typename T>
__device__ void layer_norm_backward(const T* x, const T* w, const T* dy, T* dx, i64 c, float eps) {
  i64 off = blockIdx.x * c;
  float2 st = row_stats(x + off, c, eps);
  float sg = 0.f, sgx = 0.f;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) {
    float g = to_f32(dy[off + j]) * to_f32(w[j]);
    sg += g;
    sgx += g * (to_f32(x[off + j]) - st.x) * st.y;
  }
  float mg = block_sum(sg) / (float)c, mgx = block_sum(sgx) / (float)c;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) {
    float xhat = (to_f32(x[off + j]) - st.x) * st.y;
    float g = to_f32(dy[off + j]) * to_f32(w[j]);
    dx[off + j] = from_f32<T>(st.y * (g - mg - xhat * mgx));
  }
}

// Per-row (mean, rstd) into `stats` [rows, 2]: the first half of the weight gradient.
template <typename T>
__device__ void layer_norm_row_stats(const T* x, float* stats, i64 c, float eps) {
  float2 st = row_stats(x + blockIdx.x * c, c, eps);
  if (threadIdx.x == 0) { stats[2 * blockIdx.x] = st.x; stats[2 * blockIdx.x + 1] = st.y; }
}

// dw[j] = sum over rows of dy * xhat, one thread per channel, accumulated in f64 as on the CPU.
template <typename T>
__device__ void layer_norm_backward_weight(const T* x, const T* dy, const float* stats, T* dw,
                                           i64 rows, i64 c) {
  GRID_LOOP(j, c) {
    double acc = 0.0;
    for (i64 r = 0; r < rows; ++r) {
      float xhat = (to_f32(x[r * c + j]) - stats[2 * r]) * stats[2 * r + 1];
      acc += (double)(to_f32(dy[r * c + j]) * xhat);
    }
    dw[j] = from_f32<T>((float)acc);
  }
}

#define INST(T, S)                                                                                  \
  extern "C" __global__ void layer_norm_forward_##S(const T* x, const T* w, const T* b, T* y, i64 c, \
                                                    float eps) {                                    \
    layer_norm_forward<T>(x, w, b, y, c, eps);                                                      \
  }                                                                                                 \
  extern "C" __global__ void layer_norm_backward_##S(const T* x, const T* w, const T* dy, T* dx,   \
                                                     i64 c, float eps) {                            \
    layer_norm_backward<T>(x, w, dy, dx, c, eps);                                                   \
  }                                                                                                 \
  extern "C" __global__ void layer_norm_row_stats_##S(const T* x, float* st, i64 c, float eps) {   \
    layer_norm_row_stats<T>(x, st, c, eps);                                                         \
  }                                                                                                 \
  extern "C" __global__ void layer_norm_backward_weight_##S(const T* x, const T* dy, const float* st, \
                                                            T* dw, i64 rows, i64 c) {               \
    layer_norm_backward_weight<T>(x, dy, st, dw, rows, c);                                          \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
