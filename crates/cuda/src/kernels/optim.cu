// Fused optimizer updates over one range of a parameter (PyTorch semantics, as the CPU's
// optim.rs): parameters and gradients of the element type, optimizer state in f32. Scalars that
// depend only on the step (bias corrections) are computed on the host in f64, as on the CPU.

struct SgdArgs { float lr, momentum, damp, weight_decay; int nesterov, first; };
struct AdamArgs { float one_minus_beta1, one_minus_beta2, beta2, eps, weight_decay, decay, neg_step_size, bc2_sqrt; int decoupled; };

// `buf` is null when momentum == 0.
template <typename T>
__device__ void sgd_update(T* p, const T* g, float* buf, i64 n, SgdArgs a) {
  GRID_LOOP(i, n) {
    float pv = to_f32(p[i]), gv = to_f32(g[i]);
    float d = a.weight_decay != 0.f ? gv + a.weight_decay * pv : gv;
    if (buf != nullptr) {
      float b = a.first ? d : buf[i] * a.momentum + a.damp * d;
      buf[i] = b;
      d = a.nesterov ? d + a.momentum * b : b;
    }
    p[i] = from_f32<T>(pv + -a.lr * d);
  }
}

template <typename T>
__device__ void adam_update(T* p, const T* g, float* m, float* v, i64 n, AdamArgs a) {
  GRID_LOOP(i, n) {
    float pv = to_f32(p[i]), gv = to_f32(g[i]);
    if (a.weight_decay != 0.f) {
      if (a.decoupled) pv *= a.decay;
      else gv += a.weight_decay * pv;
    }
    float w = a.one_minus_beta1, mv = m[i];
    mv = fabsf(w) < 0.5f ? mv + w * (gv - mv) : gv - (gv - mv) * (1.f - w);
    float vv = v[i] * a.beta2 + a.one_minus_beta2 * gv * gv;
    m[i] = mv;
    v[i] = vv;
    float denom = sqrtf(vv) / a.bc2_sqrt + a.eps;
    p[i] = from_f32<T>(pv + a.neg_step_size * mv / denom);
  }
}

#define INST(T, S)                                                                                 \
  extern "C" __global__ void sgd_update_##S(T* p, const T* g, float* buf, i64 n, SgdArgs a) {     \
    sgd_update<T>(p, g, buf, n, a);                                                                \
  }                                                                                                \
  extern "C" __global__ void adam_update_##S(T* p, const T* g, float* m, float* v, i64 n, AdamArgs a) { \
    adam_update<T>(p, g, m, v, n, a);                                                              \
  }
WEFT_FLOAT_TYPES(INST)
#undef INST
