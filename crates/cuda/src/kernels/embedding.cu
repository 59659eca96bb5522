// Embedding lookup and its scatter-add backward. An index outside [0, V) is flagged (its first
// position reported by the host as an error) and contributes nothing.

template <typename T>
__device__ void embedding_forward(const T* table, const int* idx, T* y, i64 n_idx, i64 c, i64 vocab,
                                  i64* bad) {
  GRID_LOOP(t, n_idx * c) {
    i64 r = t / c, j = t % c;
    int v = idx[r];
    if (v < 0 || v >= vocab) { if (j == 0) flag_bad(bad, r); y[t] = from_f32<T>(0.f); }
    else y[t] = table[(i64)v * c + j];
  }
}

// acc [V, C] (f32, zeroed by the host) += dy rows at their index: f32 atomics, so the order of
// additions to one row is unspecified (results agree with the CPU to rounding).
template <typename T>
__device__ void embedding_backward(const int* idx, const T* dy, float* acc, i64 n_idx, i64 c, i64 vocab,
                                   i64* bad) {
  GRID_LOOP(t, n_idx * c) {
    i64 r = t / c, j = t % c;
    int v = idx[r];
    if (v < 0 || v >= vocab) { if (j == 0) flag_bad(bad, r); }
    else atomicAdd(acc + (i64)v * c + j, to_f32(dy[t]));
  }
}

#define INST(T, S)                                                                                 \
  extern "C" __global__ void embedding_forward_##S(const T* tb, const int* ix, T* y, i64 n, i64 c, \
                                                   i64 v, i64* bad) {                              \
    embedding_forward<T>(tb, ix, y, n, c, v, bad);                                                 \
  }                                                                                                \
  extern "C" __global__ void embedding_backward_##S(const int* ix, const T* dy, float* acc, i64 n,  \
                                                    i64 c, i64 v, i64* bad) {                      \
    embedding_backward<T>(ix, dy, acc, n, c, v, bad);                                              \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
