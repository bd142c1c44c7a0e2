/* run_state.h — comparing two checkpoints' trainer_state.json in tests.
 *
 * Runs that must reach the same state may differ in keys a resume is free
 * to change (save_total_limit, gradient_checkpointing, ...), which the run
 * record lists: the states must then be equal with the records set aside,
 * and the records must carry the same run identity. Header-only (static
 * inline) because helpers.c may not depend on cJSON. */
#ifndef LC_TEST_RUN_STATE_H
#define LC_TEST_RUN_STATE_H

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "tests/helpers.h"

static inline bool lc_test_same_state(const char *a, const char *b)
{
    char *x = lc_test_read_file(a, NULL), *y = lc_test_read_file(b, NULL);
    cJSON *ja = cJSON_Parse(x), *jb = cJSON_Parse(y);
    cr_assert(ja && jb, "%s or %s is not JSON", a, b);
    cJSON *ra = cJSON_DetachItemFromObject(ja, "run"), *rb = cJSON_DetachItemFromObject(jb, "run");
    const cJSON *ia = cJSON_GetObjectItem(ra, "identity"), *ib = cJSON_GetObjectItem(rb, "identity");
    bool same = cJSON_IsString(ia) && cJSON_IsString(ib) &&
                strcmp(ia->valuestring, ib->valuestring) == 0 && cJSON_Compare(ja, jb, true);
    cJSON_Delete(ra);
    cJSON_Delete(rb);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    free(x);
    free(y);
    return same;
}

#endif
