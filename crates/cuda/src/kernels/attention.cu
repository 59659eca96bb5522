// Fused causal multi-head attention on GPT-2's packed qkv [B, T, 3C] (q | k | v on the last axis,
// head h at channels [h*D, (h+1)*D), scale 1/sqrt(D)), in the flash-attention style: scores are
// never stored; each query row keeps a running max and sum (online softmax), and the backward
// recomputes probabilities from the row's log-sum-exp. One warp per row; each lane holds
// D/32 (at most ATT_PER_LANE) of the row's channels, so D <= 32 * ATT_PER_LANE.
//
// Tiling. A block is ATT_WARPS consecutive rows of one (batch, head) (grid: row tiles x B*H).
// The rows a block's warps walk (keys for the forward and dq, queries for dk/dv) are staged
// through shared memory ATT_TILE(D) at a time, loaded once for all the block's warps instead of
// once per warp. Every warp still walks its own rows one at a time in ascending order, so each
// row's arithmetic is exactly the per-row algorithm (transcribed in ops/tests.rs).

#define ATT_PER_LANE 8
// Rows staged per tile: two tiles of ATT_TILE(d) x d floats stay within 32 KiB of shared memory.
#define ATT_TILE(d) ((d) <= 128 ? 32 : 16)

struct AttGeom { i64 b, t; int h, d; float scale; };

// A warp's place: the block's (batch, head) and rows [first, last], the warp's row i (valid
// when i < T; warps past the end still join the block's tile loads).
struct AttRow { i64 b, i, first, last; int h; bool valid; };

__device__ __forceinline__ AttRow att_row(const AttGeom& g) {
  AttRow r;
  r.b = (i64)blockIdx.y / g.h;
  r.h = (int)((i64)blockIdx.y % g.h);
  r.first = (i64)blockIdx.x * (blockDim.x >> 5);
  r.i = r.first + (threadIdx.x >> 5);
  r.last = min(r.first + (i64)(blockDim.x >> 5), g.t) - 1;
  r.valid = r.i < g.t;
  return r;
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

// Rows j0..j0+n of a [T, row_stride] array (a head's channels at `src`, D of them) into `tile`
// ([n, D] f32), by the whole block (`att_stage_pair` puts the barriers around it).
template <typename T>
__device__ void att_stage(const T* src, i64 row_stride, int d, i64 j0, int n, float* tile) {
  for (int e = threadIdx.x; e < n * d; e += blockDim.x) {
    int jj = e / d, ch = e - jj * d;
    tile[e] = to_f32(src[(j0 + jj) * row_stride + ch]);
  }
}

// Two such tiles (keys and values, or queries and dy) staged between barriers: every warp is
// done with the previous tiles before they are overwritten, and sees the new ones whole.
template <typename T>
__device__ void att_stage_pair(const T* a, i64 a_stride, const T* b, i64 b_stride, int d, i64 j0,
                               int n, float* ta, float* tb) {
  __syncthreads();
  att_stage(a, a_stride, d, j0, n, ta);
  att_stage(b, b_stride, d, j0, n, tb);
  __syncthreads();
}

// One query row's output o (unnormalised by l on return: o / l is the attention output) and its
// running max m and sum l, over keys 0..=i. Called by every warp of the block (tile loads).
template <typename T>
__device__ void att_row_forward(const T* base, const AttGeom& g, const AttRow& r, const float* q,
                                float* o, float* m_out, float* l_out, float* smem) {
  i64 c = (i64)g.h * g.d, stride = 3 * c;
  int tile = ATT_TILE(g.d);
  float *kt = smem, *vt = smem + tile * g.d;
  float m = WEFT_NEG_INF, l = 0.f, kv[ATT_PER_LANE];
  for (int k = 0; k < ATT_PER_LANE; ++k) o[k] = 0.f;
  for (i64 j0 = 0; j0 <= r.last; j0 += tile) {
    int n = (int)min((i64)tile, r.last + 1 - j0);
    att_stage_pair(base + c + r.h * g.d, stride, base + 2 * c + r.h * g.d, stride, g.d, j0, n,
                   kt, vt);
    if (!r.valid) continue;
    for (int jj = 0; jj < n && j0 + jj <= r.i; ++jj) {
      att_load(kt + jj * g.d, g.d, kv);
      float s = att_dot(q, kv) * g.scale;
      float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
      l = l * corr + p;
      att_load(vt + jj * g.d, g.d, kv);
      for (int k = 0; k < ATT_PER_LANE; ++k) o[k] = o[k] * corr + p * kv[k];
      m = mn;
    }
  }
  *m_out = m;
  *l_out = l;
}

template <typename T>
__device__ void causal_attention_forward(const T* qkv, T* y, AttGeom g) {
  extern __shared__ float att_smem[];
  AttRow r = att_row(g);
  i64 c = (i64)g.h * g.d;
  const T* base = qkv + r.b * g.t * 3 * c;
  float q[ATT_PER_LANE], o[ATT_PER_LANE], m, l;
  att_load(base + min(r.i, g.t - 1) * 3 * c + r.h * g.d, g.d, q);
  att_row_forward(base, g, r, q, o, &m, &l, att_smem);
  if (!r.valid) return;
  int lane = threadIdx.x & 31;
  T* yr = y + (r.b * g.t + r.i) * c + r.h * g.d;
  for (int k = 0; k < ATT_PER_LANE; ++k)
    if (lane + 32 * k < g.d) yr[lane + 32 * k] = from_f32<T>(o[k] / l);
}

// Per row: stats[2r] = log-sum-exp of the scaled scores, stats[2r+1] = D_r = dy_r . o_r.
template <typename T>
__device__ void causal_attention_backward_stats(const T* qkv, const T* dy, float* stats, AttGeom g) {
  extern __shared__ float att_smem[];
  AttRow r = att_row(g);
  i64 c = (i64)g.h * g.d, i = min(r.i, g.t - 1), row = (r.b * g.h + r.h) * g.t + i;
  const T* base = qkv + r.b * g.t * 3 * c;
  float q[ATT_PER_LANE], o[ATT_PER_LANE], g_[ATT_PER_LANE], m, l;
  att_load(base + i * 3 * c + r.h * g.d, g.d, q);
  att_row_forward(base, g, r, q, o, &m, &l, att_smem);
  if (!r.valid) return;
  for (int k = 0; k < ATT_PER_LANE; ++k) o[k] /= l;
  att_load(dy + (r.b * g.t + i) * c + r.h * g.d, g.d, g_);
  float dsum = att_dot(g_, o);
  if ((threadIdx.x & 31) == 0) { stats[2 * row] = m + logf(l); stats[2 * row + 1] = dsum; }
}

// dq_i = scale * sum_{j<=i} p_ij (dy_i . v_j - D_i) k_j.
template <typename T>
__device__ void causal_attention_backward_dq(const T* qkv, const T* dy, const float* stats, T* dqkv,
                                             AttGeom g) {
  extern __shared__ float att_smem[];
  AttRow r = att_row(g);
  i64 c = (i64)g.h * g.d, stride = 3 * c, i = min(r.i, g.t - 1), row = (r.b * g.h + r.h) * g.t + i;
  const T* base = qkv + r.b * g.t * stride;
  int tile = ATT_TILE(g.d);
  float *kt = att_smem, *vt = att_smem + tile * g.d;
  float q[ATT_PER_LANE], dyr[ATT_PER_LANE], kj[ATT_PER_LANE], vj[ATT_PER_LANE], dq[ATT_PER_LANE];
  att_load(base + i * stride + r.h * g.d, g.d, q);
  att_load(dy + (r.b * g.t + i) * c + r.h * g.d, g.d, dyr);
  float lse = stats[2 * row], dsum = stats[2 * row + 1];
  for (int k = 0; k < ATT_PER_LANE; ++k) dq[k] = 0.f;
  for (i64 j0 = 0; j0 <= r.last; j0 += tile) {
    int n = (int)min((i64)tile, r.last + 1 - j0);
    att_stage_pair(base + c + r.h * g.d, stride, base + 2 * c + r.h * g.d, stride, g.d, j0, n,
                   kt, vt);
    if (!r.valid) continue;
    for (int jj = 0; jj < n && j0 + jj <= r.i; ++jj) {
      att_load(kt + jj * g.d, g.d, kj);
      float p = expf(att_dot(q, kj) * g.scale - lse);
      att_load(vt + jj * g.d, g.d, vj);
      float ds = p * (att_dot(dyr, vj) - dsum);
      for (int k = 0; k < ATT_PER_LANE; ++k) dq[k] += ds * kj[k];
    }
  }
  if (!r.valid) return;
  int lane = threadIdx.x & 31;
  T* out = dqkv + (r.b * g.t + i) * stride + r.h * g.d;
  for (int k = 0; k < ATT_PER_LANE; ++k)
    if (lane + 32 * k < g.d) out[lane + 32 * k] = from_f32<T>(dq[k] * g.scale);
}

// For key row j: dv_j = sum_{i>=j} p_ij dy_i, dk_j = scale * sum_{i>=j} p_ij (dy_i . v_j - D_i) q_i.
// The block's warps are key rows; the query rows from the block's first key on are staged.
template <typename T>
__device__ void causal_attention_backward_dkv(const T* qkv, const T* dy, const float* stats, T* dqkv,
                                              AttGeom g) {
  extern __shared__ float att_smem[];
  AttRow r = att_row(g);
  i64 c = (i64)g.h * g.d, stride = 3 * c, j = min(r.i, g.t - 1);
  const T* base = qkv + r.b * g.t * stride;
  const T* dyb = dy + r.b * g.t * c;
  const float* st = stats + 2 * (r.b * g.h + r.h) * g.t;
  int tile = ATT_TILE(g.d);
  float *qt = att_smem, *gt = att_smem + tile * g.d;
  float kj[ATT_PER_LANE], vj[ATT_PER_LANE], qi[ATT_PER_LANE], dyi[ATT_PER_LANE];
  float dk[ATT_PER_LANE], dv[ATT_PER_LANE];
  att_load(base + j * stride + c + r.h * g.d, g.d, kj);
  att_load(base + j * stride + 2 * c + r.h * g.d, g.d, vj);
  for (int k = 0; k < ATT_PER_LANE; ++k) { dk[k] = 0.f; dv[k] = 0.f; }
  for (i64 i0 = r.first; i0 < g.t; i0 += tile) {
    int n = (int)min((i64)tile, g.t - i0);
    att_stage_pair(base + r.h * g.d, stride, dyb + r.h * g.d, c, g.d, i0, n, qt, gt);
    if (!r.valid) continue;
    for (int ii = 0; ii < n; ++ii) {
      i64 i = i0 + ii;
      if (i < r.i) continue;
      att_load(qt + ii * g.d, g.d, qi);
      att_load(gt + ii * g.d, g.d, dyi);
      float p = expf(att_dot(qi, kj) * g.scale - st[2 * i]);
      float ds = p * (att_dot(dyi, vj) - st[2 * i + 1]);
      for (int k = 0; k < ATT_PER_LANE; ++k) { dv[k] += p * dyi[k]; dk[k] += ds * qi[k]; }
    }
  }
  if (!r.valid) return;
  int lane = threadIdx.x & 31;
  T* out = dqkv + (r.b * g.t + j) * stride + r.h * g.d;
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
