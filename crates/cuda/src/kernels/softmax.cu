// Softmax over the last axis and the fused softmax cross-entropy, one block per row; rows are
// reduced in f32 with block-wide max and sum.

template <typename T>
__device__ void softmax_forward(const T* x, T* y, i64 cols) {
  const T* xr = x + blockIdx.x * cols;
  T* yr = y + blockIdx.x * cols;
  float m = WEFT_NEG_INF;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, to_f32(xr[j]));
  m = block_max(m);
  float s = 0.f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) s += expf(to_f32(xr[j]) - m);
  float inv = 1.f / block_sum(s);
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = from_f32<T>(expf(to_f32(xr[j]) - m) * inv);
}

// dx = y * (dy - sum(dy * y)).
template <typename T>
__device__ void softmax_backward(const T* y, const T* dy, T* dx, i64 cols) {
  i64 off = blockIdx.x * cols;
  float s = 0.f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) s += to_f32(dy[off + j]) * to_f32(y[off + j]);
  s = block_sum(s);
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) {
    float yv = to_f32(y[off + j]);
    dx[off + j] = from_f32<T>(yv * (to_f32(dy[off + j]) - s));
  }
}

// (max, log-sum-exp) of one row.
template <typename T>
__device__ float2 row_logsumexp(const T* xr, i64 cols) {
  float m = WEFT_NEG_INF;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, to_f32(xr[j]));
  m = block_max(m);
  float s = 0.f;
  for (i64 j = threadIdx.x; j < cols; j += blockDim.x) s += expf(to_f32(xr[j]) - m);
  s = block_sum(s);
  return make_float2(m, m + logf(s));
}

// loss[row] = logsumexp(row) - row[label]. A label outside [0, V) is flagged, its loss 0.
template <typename T>
__device__ void cross_entropy_forward(const T* logits, const int* labels, T* loss, i64 vocab, i64* bad) {
  i64 row = blockIdx.x;
  const T* xr = logits + row * vocab;
  float lse = row_logsumexp(xr, vocab).y;
  if (threadIdx.x == 0) {
    int l = labels[row];
    if (l < 0 || l >= vocab) { flag_bad(bad, row); loss[row] = from_f32<T>(0.f); }
    else loss[row] = from_f32<T>(lse - to_f32(xr[l]));
  }
}

// dlogits = (softmax(row) - onehot(label)) * dloss[row].
template <typename T>
__device__ void cross_entropy_backward(const T* logits, const int* labels, const T* dloss, T* dx,
                                       i64 vocab, i64* bad) {
  i64 row = blockIdx.x;
  const T* xr = logits + row * vocab;
  float lse = row_logsumexp(xr, vocab).y;
  int l = labels[row];
  if (l < 0 || l >= vocab) { if (threadIdx.x == 0) flag_bad(bad, row); l = -1; }
  float g = to_f32(dloss[row]);
  for (i64 j = threadIdx.x; j < vocab; j += blockDim.x) {
    float p = expf(to_f32(xr[j]) - lse) - (j == l ? 1.f : 0.f);
    dx[row * vocab + j] = from_f32<T>(p * g);
  }
}

#define INST(T, S)                                                                                 \
  extern "C" __global__ void softmax_forward_##S(const T* x, T* y, i64 c) { softmax_forward<T>(x, y, c); } \
  extern "C" __global__ void softmax_backward_##S(const T* y, const T* dy, T* dx, i64 c) {         \
    softmax_backward<T>(y, dy, dx, c);                                                             \
  }                                                                                                \
  extern "C" __global__ void cross_entropy_forward_##S(const T* x, const int* l, T* loss, i64 v, i64* bad) { \
    cross_entropy_forward<T>(x, l, loss, v, bad);                                                  \
  }                                                                                                \
  extern "C" __global__ void cross_entropy_backward_##S(const T* x, const int* l, const T* g, T* dx, \
                                                        i64 v, i64* bad) {                         \
    cross_entropy_backward<T>(x, l, g, dx, v, bad);                                                \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
