#pragma once
#include "lc_sim.h"
#include "autograd/dtype.h"
struct __nv_bfloat16 { uint16_t x; };
/* the CPU's bf16 conversions (autograd/dtype.h): one rounding rule for both */
inline float __bfloat162float(__nv_bfloat16 h) { return lc_bf16_to_f32(h.x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{lc_f32_to_bf16(f)}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
