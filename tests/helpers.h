/* helpers.h — small helpers shared by the Criterion tests: fixture paths,
 * temporary directories and files, and norm-wise relative error. */
#ifndef LC_TEST_HELPERS_H
#define LC_TEST_HELPERS_H

#include <stddef.h>

/* Absolute path of a file under tests/fixtures/ (static buffer per call slot). */
const char *lc_test_fixture(const char *rel);
/* Makes a fresh empty temporary directory and returns its path (malloc'd). */
char *lc_test_tmpdir(void);
/* Writes bytes to dir/name and returns the full path (malloc'd). */
char *lc_test_write_file(const char *dir, const char *name, const void *data, size_t n);
/* ||a - b|| / max(||b||, tiny), accumulated in double. */
double lc_test_rel_err_f32(const float *a, const float *b, size_t n);
double lc_test_rel_err_f64(const double *a, const double *b, size_t n);

#endif
