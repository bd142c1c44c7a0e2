/* crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial
 * value and final xor 0xFFFFFFFF), as TFRecord files use it, and the
 * "masked" form TFRecord stores: rotate right by 15 bits, plus 0xA282EAD8
 * (a CRC of data that itself holds CRCs is then not trivially related to
 * them). crc32c("123456789") = 0xE3069283. */
#ifndef LC_CRC32C_H
#define LC_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n bytes. */
uint32_t lc_crc32c(const void *data, size_t n);

/* The TFRecord mask of a CRC: ((crc >> 15) | (crc << 17)) + 0xA282EAD8. */
uint32_t lc_crc32c_mask(uint32_t crc);

#endif
