// Inverted dropout with the counter-based mask of weft_core::rng: keep element i of dropout
// `seed` at optimizer step `step` iff uniform(seed, step, i) >= p, bit for bit as on the CPU
// (mix64 is splitmix64's finaliser; uniform takes the top 24 bits). Forward and backward are the
// same masked scaling, so one kernel serves both directions.

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float uniform01(unsigned long long seed, unsigned long long stream,
                                           unsigned long long index) {
  unsigned long long r = mix64(mix64(seed ^ mix64(stream)) ^ index);
  return (float)(r >> 40) / 16777216.f;
}

template <typename T>
__device__ void dropout_forward(const T* x, T* y, i64 n, float p, float scale,
                                unsigned long long seed, unsigned long long step) {
  GRID_LOOP(i, n) {
    bool keep = uniform01(seed, step, (unsigned long long)i) >= p;
    y[i] = from_f32<T>(keep ? to_f32(x[i]) * scale : 0.f);
  }
}

#define INST(T, S)                                                                              \
  extern "C" __global__ void dropout_forward_##S(const T* x, T* y, i64 n, float p, float scale, \
                                                 unsigned long long seed, unsigned long long step) { \
    dropout_forward<T>(x, y, n, p, scale, seed, step);                                          \
  }                                                                                             \
  extern "C" __global__ void dropout_backward_##S(const T* dy, T* dx, i64 n, float p, float scale, \
                                                  unsigned long long seed, unsigned long long step) { \
    dropout_forward<T>(dy, dx, n, p, scale, seed, step);                                        \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
