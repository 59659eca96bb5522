// Reductions over one axis of x viewed as [outer, len, inner]; one thread per (outer, inner).
// 0 sum, 1 mean, 2 max (NaN propagates, as the CPU kernel's comparison does not skip it).

template <typename T>
__device__ void reduce_forward(int op, const T* x, T* y, i64 outer, i64 len, i64 inner) {
  GRID_LOOP(t, outer * inner) {
    i64 o = t / inner, i = t % inner;
    const T* p = x + o * len * inner + i;
    float acc = op == 2 ? WEFT_NEG_INF : 0.f;
    for (i64 l = 0; l < len; ++l) {
      float v = to_f32(p[l * inner]);
      if (op == 2) acc = (v > acc || v != v) ? v : acc;
      else acc += v;
    }
    if (op == 1) acc /= (float)len;
    y[t] = from_f32<T>(acc);
  }
}

// dx = dy at the first arg-max along the axis, zero elsewhere.
template <typename T>
__device__ void max_backward(const T* x, const T* dy, T* dx, i64 outer, i64 len, i64 inner) {
  GRID_LOOP(t, outer * inner) {
    i64 o = t / inner, i = t % inner;
    const T* p = x + o * len * inner + i;
    T* q = dx + o * len * inner + i;
    i64 best = 0;
    float bv = to_f32(p[0]);
    for (i64 l = 1; l < len; ++l) {
      float v = to_f32(p[l * inner]);
      if (v > bv) { bv = v; best = l; }
    }
    for (i64 l = 0; l < len; ++l) q[l * inner] = from_f32<T>(l == best ? to_f32(dy[t]) : 0.f);
  }
}

#define INST(T, S)                                                                              \
  extern "C" __global__ void reduce_forward_##S(int op, const T* x, T* y, i64 o, i64 l, i64 i) { \
    reduce_forward<T>(op, x, y, o, l, i);                                                       \
  }                                                                                             \
  extern "C" __global__ void max_backward_##S(const T* x, const T* dy, T* dx, i64 o, i64 l, i64 i) { \
    max_backward<T>(x, dy, dx, o, l, i);                                                        \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
