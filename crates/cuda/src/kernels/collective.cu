// Collectives between virtual devices on one GPU. The reduction reads every rank's buffer
// directly (they share the GPU's memory) and folds them in rank order, the sum as
// ((x0 + x1) + x2) + ..., then Mean's one division: what weft_core's reduce_in_rank_order
// computes on the host, so a data-parallel run on one GPU equals one on CPU devices bit for bit.

#define MAX_PEERS 16

// The addresses of up to MAX_PEERS ranks' buffers, passed by value.
struct Peers {
    const float* p[MAX_PEERS];
};

// out[i] = fold of src.p[0..count][i] over the ranks in order; unless `first`, the fold
// continues from out[i] (groups of more than MAX_PEERS ranks take several passes). `op_max`:
// the maximum, where a NaN from any rank wins; else the sum. `divide_by` > 0: Mean's division,
// on the last pass.
extern "C" __global__ void collective_reduce_f32(Peers src, int count, float* out, long long n,
                                                 int op_max, int first, int divide_by) {
    long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        int k = 0;
        float acc;
        if (first) {
            acc = src.p[0][i];
            k = 1;
        } else {
            acc = out[i];
        }
        for (; k < count; k++) {
            float x = src.p[k][i];
            if (op_max) {
                acc = (isnan(acc) || isnan(x)) ? __int_as_float(0x7fc00000) : fmaxf(acc, x);
            } else {
                acc = acc + x;
            }
        }
        if (divide_by > 0) {
            acc = acc / (float)divide_by;
        }
        out[i] = acc;
    }
}
