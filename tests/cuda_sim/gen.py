# gen.py SRC.cu DST.cpp — rewrites a backend .cu file into C++ the simulator
# compiles: `K<<<grid, block, smem, stream>>>(args)` becomes
# `lc_sim_launch(grid, block, smem, stream, K, "K")(args)` and the dynamic
# shared-memory declaration becomes a pointer to the simulated block's buffer;
# include/lc_sim_structs.h is included where the by-value kernel structs
# (lc_dweight, mt_args, attn_args) are defined.
# It also guards the sites of two injected wiring bugs with lc_sim_bug(NAME),
# which LC_INJECT_BUG=NAME turns on at run time (the ctests cuda_sim_bug_* expect
# the op-parity harness to fail on each): no_syncthreads drops the barrier
# between the attention forward's K/V tile loads and their use; no_sync drops the stream
# synchronisation before the host reads the grad norm back.
import re, sys, os
src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
s = s.replace('extern __shared__ float sm[];', 'float *sm = (float *)lc_sim_dyn_smem();')
# the device-pointer checks of by-value struct arguments (include/lc_sim_structs.h)
inc = '#include "autograd/cuda/cuda_common.cuh"\n'
s = s.replace(inc, inc + '#include "lc_sim_structs.h"\n')
s = re.sub(r'(\nstruct (mt_args|attn_args) \{.*?\n\};\n)',
           r'\1#define LC_SIM_HAVE_\2\n#include "lc_sim_structs.h"\n', s, flags=re.S)
pat = re.compile(r'(\w+(?:<\w+(?:, \w+)*>)?)<<<(.*?)>>>\(', re.S)
s = pat.sub(lambda m: 'lc_sim_launch(%s, %s, "%s")(' % (m.group(2), m.group(1), m.group(1)), s)
INJECT = {
    'cuda_attention.cu': ('no_syncthreads',
                          '        load_tile(Vs, D, v, a, b, a.KV, kvh, k0, BK, 1.0f);\n'
                          '        if (threadIdx.x < BK) {\n'
                          '            int64_t kj = k0 + threadIdx.x;\n'
                          '            segk[threadIdx.x] = (a.seg && kj < T_) ? a.seg[b * T_ + kj] : 0;\n'
                          '        }\n        __syncthreads();\n',
                          '        __syncthreads();\n'),
    'cuda_optim.cu': ('no_sync',
                      '    LC_CU(&c->err, cudaStreamSynchronize(c->stream));\n    *norm = h[0];\n',
                      '    LC_CU(&c->err, cudaStreamSynchronize(c->stream));\n'),
}
if os.path.basename(src) in INJECT:
    bug, site, stmt = INJECT[os.path.basename(src)]
    if s.count(site) != 1:
        sys.exit('gen.py: the site of injected bug %s is not (once) in %s; update INJECT' % (bug, src))
    indent = stmt[:len(stmt) - len(stmt.lstrip())]
    s = s.replace(site, site.replace(stmt, '%sif (!lc_sim_bug("%s"))\n    %s' % (indent, bug, stmt), 1))
open(dst, 'w').write(s)
