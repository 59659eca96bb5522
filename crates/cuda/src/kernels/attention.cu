// Fused causal multi-head attention on GPT-2's packed qkv [B, T, 3C] (q | k | v on the last axis,
// head h at channels [h*D, (h+1)*D), scale 1/sqrt(D)), in the flash-attention style: scores are
// never stored; each query row keeps a running max and sum (online softmax), and the backward
// recomputes probabilities from the row's log-sum-exp. One warp per row; each lane holds
// D/32 (at most ATT_PER_LANE) of the row's channels, so D <= 32 * ATT_PER_LANE.

#define ATT_PER_LANE 8

struct AttGeom { i64 b, t; int h, d; float scale; };

// The warp's (batch, head, row) and its offsets; false when the warp has no row.
__device__ __forceinline__ bool att_row(const AttGeom& g, i64* b, int* h, i64* i) {
  i64 warp = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (warp >= g.b * g.h * g.t) return false;
  *b = warp / (g.h * g.t);
  *h = (int)((warp / g.t) % g.h);
  *i = warp % g.t;
  return true;
}

template <typename T>
__device__ __forceinline__ void att_load(const T* src, int d, float* dst) {
  int lane = threadIdx.x & 31;
  for (int k = 0; k < ATT_PER_LANE; ++k) {
    int c = lane + 32 * k;
    dst[k] = c < d ? to_f32(src[c]) : 0.f;
  }
}

__device__ __forceinline__ float att_dot(const float* a, const float* b) {
  float s = 0.f;
  for (int k = 0; k < ATT_PER_LANE; ++k) s += a[k] * b[k];
  return warp_sum(s);
}

// One query row's output o (unnormalised by l on return: o / l is the attention output) and its
// running max m and sum l, over keys 0..=i.
template <typename T>
__device__ void att_row_forward(const T* base, const AttGeom& g, int h, i64 i, const float* q,
                                float* o, float* m_out, float* l_out) {
  i64 c = (i64)g.h * g.d, stride = 3 * c;
  float m = WEFT_NEG_INF, l = 0.f, kv[ATT_PER_LANE];
  for (int k = 0; k < ATT_PER_LANE; ++k) o[k] = 0.f;
  for (i64 j = 0; j <= i; ++j) {
    att_load(base + j * stride + c + h * g.d, g.d, kv);
    float s = att_dot(q, kv) * g.scale;
    float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
    l = l * corr + p;
    att_load(base + j * stride + 2 * c + h * g.d, g.d, kv);
    for (int k = 0; k < ATT_PER_LANE; ++k) o[k] = o[k] * corr + p * kv[k];
    m = mn;
  }
  *m_out = m;
  *l_out = l;
}

template <typename T>
__device__ void causal_attention_forward(const T* qkv, T* y, AttGeom g) {
  i64 b, i;
  int h;
  if (!att_row(g, &b, &h, &i)) return;
  i64 c = (i64)g.h * g.d;
  const T* base = qkv + b * g.t * 3 * c;
  float q[ATT_PER_LANE], o[ATT_PER_LANE], m, l;
  att_load(base + i * 3 * c + h * g.d, g.d, q);
  att_row_forward(base, g, h, i, q, o, &m, &l);
  int lane = threadIdx.x & 31;
  T* yr = y + (b * g.t + i) * c + h * g.d;
  for (int k = 0; k < ATT_PER_LANE; ++k)
    if (lane + 32 * k < g.d) yr[lane + 32 * k] = from_f32<T>(o[k] / l);
}

// Per row: stats[2r] = log-sum-exp of the scaled scores, stats[2r+1] = D_r = dy_r . o_r.
template <typename T>
__device__ void causal_attention_backward_stats(const T* qkv, const T* dy, float* stats, AttGeom g) {
  i64 b, i;
  int h;
  if (!att_row(g, &b, &h, &i)) return;
  i64 c = (i64)g.h * g.d, row = (b * g.h + h) * g.t + i;
  const T* base = qkv + b * g.t * 3 * c;
  float q[ATT_PER_LANE], o[ATT_PER_LANE], g_[ATT_PER_LANE], m, l;
  att_load(base + i * 3 * c + h * g.d, g.d, q);
  att_row_forward(base, g, h, i, q, o, &m, &l);
  for (int k = 0; k < ATT_PER_LANE; ++k) o[k] /= l;
  att_load(dy + (b * g.t + i) * c + h * g.d, g.d, g_);
  float dsum = att_dot(g_, o);
  if ((threadIdx.x & 31) == 0) { stats[2 * row] = m + logf(l); stats[2 * row + 1] = dsum; }
}

// dq_i = scale * sum_{j<=i} p_ij (dy_i . v_j - D_i) k_j.
template <typename T>
__device__ void causal_attention_backward_dq(const T* qkv, const T* dy, const float* stats, T* dqkv,
                                             AttGeom g) {
  i64 b, i;
  int h;
  if (!att_row(g, &b, &h, &i)) return;
  i64 c = (i64)g.h * g.d, stride = 3 * c, row = (b * g.h + h) * g.t + i;
  const T* base = qkv + b * g.t * stride;
  float q[ATT_PER_LANE], dyr[ATT_PER_LANE], kv[ATT_PER_LANE], dq[ATT_PER_LANE];
  att_load(base + i * stride + h * g.d, g.d, q);
  att_load(dy + (b * g.t + i) * c + h * g.d, g.d, dyr);
  float lse = stats[2 * row], dsum = stats[2 * row + 1];
  for (int k = 0; k < ATT_PER_LANE; ++k) dq[k] = 0.f;
  for (i64 j = 0; j <= i; ++j) {
    att_load(base + j * stride + c + h * g.d, g.d, kv);
    float p = expf(att_dot(q, kv) * g.scale - lse);
    float kj[ATT_PER_LANE];
    for (int k = 0; k < ATT_PER_LANE; ++k) kj[k] = kv[k];
    att_load(base + j * stride + 2 * c + h * g.d, g.d, kv);
    float ds = p * (att_dot(dyr, kv) - dsum);
    for (int k = 0; k < ATT_PER_LANE; ++k) dq[k] += ds * kj[k];
  }
  int lane = threadIdx.x & 31;
  T* out = dqkv + (b * g.t + i) * stride + h * g.d;
  for (int k = 0; k < ATT_PER_LANE; ++k)
    if (lane + 32 * k < g.d) out[lane + 32 * k] = from_f32<T>(dq[k] * g.scale);
}

// For key row j: dv_j = sum_{i>=j} p_ij dy_i, dk_j = scale * sum_{i>=j} p_ij (dy_i . v_j - D_i) q_i.
template <typename T>
__device__ void causal_attention_backward_dkv(const T* qkv, const T* dy, const float* stats, T* dqkv,
                                              AttGeom g) {
  i64 b, j;
  int h;
  if (!att_row(g, &b, &h, &j)) return;
  i64 c = (i64)g.h * g.d, stride = 3 * c;
  const T* base = qkv + b * g.t * stride;
  float kj[ATT_PER_LANE], vj[ATT_PER_LANE], qi[ATT_PER_LANE], dyi[ATT_PER_LANE];
  float dk[ATT_PER_LANE], dv[ATT_PER_LANE];
  att_load(base + j * stride + c + h * g.d, g.d, kj);
  att_load(base + j * stride + 2 * c + h * g.d, g.d, vj);
  for (int k = 0; k < ATT_PER_LANE; ++k) { dk[k] = 0.f; dv[k] = 0.f; }
  for (i64 i = j; i < g.t; ++i) {
    i64 row = (b * g.h + h) * g.t + i;
    att_load(base + i * stride + h * g.d, g.d, qi);
    att_load(dy + (b * g.t + i) * c + h * g.d, g.d, dyi);
    float p = expf(att_dot(qi, kj) * g.scale - stats[2 * row]);
    float ds = p * (att_dot(dyi, vj) - stats[2 * row + 1]);
    for (int k = 0; k < ATT_PER_LANE; ++k) { dv[k] += p * dyi[k]; dk[k] += ds * qi[k]; }
  }
  int lane = threadIdx.x & 31;
  T* out = dqkv + (b * g.t + j) * stride + h * g.d;
  for (int k = 0; k < ATT_PER_LANE; ++k) {
    if (lane + 32 * k < g.d) {
      out[c + lane + 32 * k] = from_f32<T>(dk[k] * g.scale);
      out[2 * c + lane + 32 * k] = from_f32<T>(dv[k]);
    }
  }
}

#define INST(T, S)                                                                                  \
  extern "C" __global__ void causal_attention_forward_##S(const T* qkv, T* y, AttGeom g) {          \
    causal_attention_forward<T>(qkv, y, g);                                                         \
  }                                                                                                 \
  extern "C" __global__ void causal_attention_backward_stats_##S(const T* qkv, const T* dy, float* st, \
                                                                 AttGeom g) {                       \
    causal_attention_backward_stats<T>(qkv, dy, st, g);                                             \
  }                                                                                                 \
  extern "C" __global__ void causal_attention_backward_dq_##S(const T* qkv, const T* dy,            \
                                                              const float* st, T* dqkv, AttGeom g) { \
    causal_attention_backward_dq<T>(qkv, dy, st, dqkv, g);                                          \
  }                                                                                                 \
  extern "C" __global__ void causal_attention_backward_dkv_##S(const T* qkv, const T* dy,           \
                                                               const float* st, T* dqkv, AttGeom g) { \
    causal_attention_backward_dkv<T>(qkv, dy, st, dqkv, g);                                         \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
