# gpu_env.sh — sourced by the scripts that run on a GPU machine inside one
# device slot (scripts/gpu_check.sh, scripts/bench_gpu.sh): what card is there,
# and how long a step may still take.

# gpu_detect: sets GPU ("name, memory, compute capability" of the first card)
# and ARCH (its CMAKE_CUDA_ARCHITECTURES, e.g. 90); fails without a GPU.
gpu_detect() {
    GPU=$(nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -1) \
        && [ -n "$GPU" ] || return 1
    ARCH=$(awk -F, '{print $NF}' <<<"$GPU" | tr -d ' .') # the last field: a name may hold commas
}

# limit SECONDS: a step's timeout, cut to what is left before $DEADLINE (in
# bash's $SECONDS; at least 1 s: a step that gets none times out and fails)
limit() { local left=$((DEADLINE - SECONDS)); [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"; }
