#pragma once
#include "lc_sim.h"
struct __half { uint16_t x; };
inline float __half2float(__half h)
{
    uint32_t s = (uint32_t)(h.x >> 15) << 31, e = (h.x >> 10) & 31, m = h.x & 1023, u;
    if (e == 0) {
        if (m == 0) u = s;
        else { float f = std::ldexp((float)m, -24); memcpy(&u, &f, 4); u |= s; }
    } else if (e == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((e + 112) << 23) | (m << 13);
    float f; memcpy(&f, &u, 4); return f;
}
