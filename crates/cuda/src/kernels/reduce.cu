// Reductions over one axis of x viewed as [outer, len, inner]; one thread per (outer, inner).
// REDUCE_SUM, REDUCE_MEAN (both accumulated in f64, as on the CPU; the mean of an empty axis is
// NaN), REDUCE_MAX (NaN elements are skipped by the comparison, as on the CPU; the host rejects an
// empty axis). An unknown code traps.

template <typename T>
__device__ void reduce_forward(int op, const T* x, T* y, i64 outer, i64 len, i64 inner) {
  GRID_LOOP(t, outer * inner) {
    i64 o = t / inner, i = t % inner;
    const T* p = x + o * len * inner + i;
    switch (op) {
      case REDUCE_MAX: {
        float m = WEFT_NEG_INF;
        for (i64 l = 0; l < len; ++l) { float v = to_f32(p[l * inner]); if (v > m) m = v; }
        y[t] = from_f32<T>(m);
        break;
      }
      case REDUCE_SUM:
      case REDUCE_MEAN: {
        double acc = 0.0;
        for (i64 l = 0; l < len; ++l) acc += (double)to_f32(p[l * inner]);
        y[t] = from_f32<T>((float)(op == REDUCE_MEAN ? acc / (double)len : acc));
        break;
      }
      default: __trap();
    }
  }
}

// dx = dy at the first arg-max along the axis (the first NaN, if any, as on the CPU), zero elsewhere.
template <typename T>
__device__ void max_backward(const T* x, const T* dy, T* dx, i64 outer, i64 len, i64 inner) {
  GRID_LOOP(t, outer * inner) {
    i64 o = t / inner, i = t % inner;
    const T* p = x + o * len * inner + i;
    T* q = dx + o * len * inner + i;
    i64 best = 0;
    float bv = to_f32(p[0]);
    for (i64 l = 1; l < len && bv == bv; ++l) {
      float v = to_f32(p[l * inner]);
      if (v > bv || v != v) { bv = v; best = l; }
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
