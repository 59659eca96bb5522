//! weft-cuda: the CUDA backend and NCCL communicator. Filled by the GPU issue; today it only
//! states that no CUDA backend is compiled in, so callers get a typed error, never a panic.
