// Elementwise families: unary (+ backward), broadcasting binary, scale, fill, in-place add,
// dtype casts. Op codes are the generated UNARY_* / BINARY_* defines (kernels/codes.rs); an
// unknown code traps.

#define GELU_BETA 0.7978845608f
#define GELU_KAPPA 0.044715f

__device__ __forceinline__ float gelu_f(float x) {
  float inner = GELU_BETA * (x + GELU_KAPPA * x * x * x);
  return 0.5f * x * (1.f + tanhf(inner));
}

// d gelu / dx in PyTorch's GeluBackward (tanh) form.
__device__ __forceinline__ float gelu_grad_f(float x) {
  float x_sq = x * x;
  float t = tanhf(GELU_BETA * (x + GELU_KAPPA * x_sq * x));
  float left_derivative = 0.5f * (1.f + t);
  float right_derivative = 0.5f * x * (1.f - t * t) * GELU_BETA * (1.f + 3.f * GELU_KAPPA * x_sq);
  return left_derivative + right_derivative;
}

__device__ __forceinline__ float unary_f(int op, float v) {
  switch (op) {
    case UNARY_RELU: return v > 0.f ? v : 0.f;
    case UNARY_GELU: return gelu_f(v);
    case UNARY_TANH: return tanhf(v);
    case UNARY_EXP: return expf(v);
    case UNARY_LOG: return logf(v);
    case UNARY_NEG: return -v;
    case UNARY_SQRT: return sqrtf(v);
    default: __trap(); return 0.f;
  }
}

__device__ __forceinline__ float unary_grad_f(int op, float v, float g) {
  switch (op) {
    case UNARY_RELU: return v > 0.f ? g : 0.f;  // threshold_backward: 0 at exactly 0
    case UNARY_GELU: return g * gelu_grad_f(v);
    case UNARY_TANH: { float t = tanhf(v); return g * (1.f - t * t); }
    case UNARY_EXP: return g * expf(v);
    case UNARY_LOG: return g / v;
    case UNARY_NEG: return -g;
    case UNARY_SQRT: return g / (2.f * sqrtf(v));
    default: __trap(); return 0.f;
  }
}

template <typename T>
__device__ void unary_forward(int op, const T* x, T* y, i64 n) {
  GRID_LOOP(i, n) y[i] = from_f32<T>(unary_f(op, to_f32(x[i])));
}

template <typename T>
__device__ void unary_backward(int op, const T* x, const T* dy, T* dx, i64 n) {
  GRID_LOOP(i, n) dx[i] = from_f32<T>(unary_grad_f(op, to_f32(x[i]), to_f32(dy[i])));
}

// a and b are read through broadcast strides (0 on broadcast dims)
// over the output's `rank` dims.
template <typename T>
__device__ void binary_forward(int op, const T* a, Dims as, const T* b, Dims bs, T* y, Dims dims,
                               int rank, i64 n) {
  GRID_LOOP(i, n) {
    i64 rem = i, ia = 0, ib = 0;
    for (int d = rank - 1; d >= 0; --d) {
      i64 c = rem % dims.d[d];
      rem /= dims.d[d];
      ia += c * as.d[d];
      ib += c * bs.d[d];
    }
    float u = to_f32(a[ia]), v = to_f32(b[ib]), r;
    switch (op) {
      case BINARY_ADD: r = u + v; break;
      case BINARY_SUB: r = u - v; break;
      case BINARY_MUL: r = u * v; break;
      case BINARY_DIV: r = u / v; break;
      default: __trap(); r = 0.f;
    }
    y[i] = from_f32<T>(r);
  }
}

template <typename T>
__device__ void scale(const T* x, T* y, float factor, i64 n) {
  GRID_LOOP(i, n) y[i] = from_f32<T>(to_f32(x[i]) * factor);
}

template <typename T>
__device__ void fill(T* y, float value, i64 n) {
  GRID_LOOP(i, n) y[i] = from_f32<T>(value);
}

template <typename T>
__device__ void add_inplace(T* dst, const T* src, i64 n) {
  GRID_LOOP(i, n) dst[i] = from_f32<T>(to_f32(dst[i]) + to_f32(src[i]));
}

// Sum over broadcast dimensions: output element o (in the input-rank `out_dims`, 1 on reduced
// dims) sums the `per` input elements that broadcast from it.
template <typename T>
__device__ void sum_to(const T* x, Dims in_dims, T* y, Dims out_dims, int rank, i64 n_out, i64 per) {
  GRID_LOOP(o, n_out) {
    i64 base = 0, stride = 1, rem = o;
    Dims in_stride;
    for (int d = rank - 1; d >= 0; --d) {
      in_stride.d[d] = stride;
      i64 c = rem % out_dims.d[d];
      rem /= out_dims.d[d];
      base += c * stride;
      stride *= in_dims.d[d];
    }
    float acc = 0.f;
    for (i64 r = 0; r < per; ++r) {
      i64 rr = r, off = base;
      for (int d = rank - 1; d >= 0; --d) {
        if (out_dims.d[d] == 1 && in_dims.d[d] != 1) {
          off += (rr % in_dims.d[d]) * in_stride.d[d];
          rr /= in_dims.d[d];
        }
      }
      acc += to_f32(x[off]);
    }
    y[o] = from_f32<T>(acc);
  }
}

// Any float type to any: widened exactly to f32, rounded once (nearest even) to the target.
template <typename S, typename D>
__device__ void cast(const S* x, D* y, i64 n) {
  GRID_LOOP(i, n) y[i] = from_f32<D>(to_f32(x[i]));
}

// Sum of squares in f64, one partial per block (summed on the host in block order, so the result
// does not depend on scheduling).
template <typename T>
__device__ void sum_squares(const T* x, double* partial, i64 n) {
  __shared__ double part[32];
  double acc = 0.0;
  GRID_LOOP(i, n) { double v = to_f32(x[i]); acc += v * v; }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) s += part[w];
    partial[blockIdx.x] = s;
  }
}

#define INST(T, S)                                                                                     \
  extern "C" __global__ void unary_forward_##S(int op, const T* x, T* y, i64 n) {                      \
    unary_forward<T>(op, x, y, n);                                                                     \
  }                                                                                                    \
  extern "C" __global__ void unary_backward_##S(int op, const T* x, const T* dy, T* dx, i64 n) {       \
    unary_backward<T>(op, x, dy, dx, n);                                                               \
  }                                                                                                    \
  extern "C" __global__ void binary_forward_##S(int op, const T* a, Dims as, const T* b, Dims bs,     \
                                                T* y, Dims dims, int rank, i64 n) {                    \
    binary_forward<T>(op, a, as, b, bs, y, dims, rank, n);                                             \
  }                                                                                                    \
  extern "C" __global__ void scale_##S(const T* x, T* y, float f, i64 n) { scale<T>(x, y, f, n); }    \
  extern "C" __global__ void fill_##S(T* y, float v, i64 n) { fill<T>(y, v, n); }                    \
  extern "C" __global__ void scale_inplace_##S(T* x, float f, i64 n) {                             \
    GRID_LOOP(i, n) x[i] = from_f32<T>(to_f32(x[i]) * f);                                              \
  }                                                                                                    \
  extern "C" __global__ void add_inplace_##S(T* d, const T* s, i64 n) { add_inplace<T>(d, s, n); }   \
  extern "C" __global__ void sum_to_##S(const T* x, Dims id, T* y, Dims od, int rank, i64 n, i64 per) { \
    sum_to<T>(x, id, y, od, rank, n, per);                                                             \
  }                                                                                                    \
  extern "C" __global__ void sum_squares_##S(const T* x, double* p, i64 n) { sum_squares<T>(x, p, n); }
WEFT_FLOAT_TYPES(INST)
#undef INST

#define CAST(S, SS, D, DS) \
  extern "C" __global__ void cast_##SS##_##DS(const S* x, D* y, i64 n) { cast<S, D>(x, y, n); }
#define CAST_FROM(S, SS) CAST(S, SS, float, f32) CAST(S, SS, bf16_t, bf16) CAST(S, SS, f16_t, f16)
WEFT_FLOAT_TYPES(CAST_FROM)
#undef CAST_FROM
#undef CAST
