# gen.py SRC.cu DST.cpp — rewrites a backend .cu file into C++ the simulator
# compiles: `K<<<grid, block, smem, stream>>>(args)` becomes
# `lc_sim_launch(grid, block, smem, stream, K, "K")(args)` and the dynamic
# shared-memory declaration becomes a pointer to the simulated block's buffer;
# include/lc_sim_structs.h is included where the by-value kernel structs
# (lc_cuda_weight, mt_args, attn_args) are defined.
import re, sys, os
src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
s = s.replace('extern __shared__ float sm[];', 'float *sm = (float *)lc_sim_dyn_smem();')
# the device-pointer checks of by-value struct arguments (include/lc_sim_structs.h)
inc = '#include "autograd/cuda/cuda_common.cuh"\n'
s = s.replace(inc, inc + '#include "lc_sim_structs.h"\n')
s = re.sub(r'(\nstruct (mt_args|attn_args) \{.*?\n\};\n)',
           r'\1#define LC_SIM_HAVE_\2\n#include "lc_sim_structs.h"\n', s, flags=re.S)
pat = re.compile(r'(\w+(?:<\w+>)?)<<<(.*?)>>>\(', re.S)
s = pat.sub(lambda m: 'lc_sim_launch(%s, %s, "%s")(' % (m.group(2), m.group(1), m.group(1)), s)
open(dst, 'w').write(s)
