// Data movement: one strided copy serves reshape, permute, slice, slice backward (into a zeroed
// output), concat (one launch per part) and expand (stride 0 on broadcast dims). It moves bits,
// so it is instantiated by element width, not by type: b32 for f32/i32, b16 for bf16/f16.

template <typename T>
__device__ void strided_copy(const T* x, i64 x_off, Dims xs, T* y, i64 y_off, Dims ys, Dims dims,
                             int rank, i64 n) {
  GRID_LOOP(i, n) {
    i64 rem = i, ix = x_off, iy = y_off;
    for (int d = rank - 1; d >= 0; --d) {
      i64 c = rem % dims.d[d];
      rem /= dims.d[d];
      ix += c * xs.d[d];
      iy += c * ys.d[d];
    }
    y[iy] = x[ix];
  }
}

#define INST(T, S)                                                                              \
  extern "C" __global__ void strided_copy_##S(const T* x, i64 xo, Dims xs, T* y, i64 yo, Dims ys, \
                                              Dims dims, int rank, i64 n) {                     \
    strided_copy<T>(x, xo, xs, y, yo, ys, dims, rank, n);                                       \
  }
INST(unsigned int, b32)
INST(unsigned short, b16)
#undef INST
