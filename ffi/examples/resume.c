/* Suspend and resume a generation with the autark C API.
 *
 *   ./resume MODEL STATE full PROMPT N   generate N tokens
 *   ./resume MODEL STATE save PROMPT N   generate N tokens, save the session to STATE
 *   ./resume MODEL STATE load M          load STATE, continue with M more tokens
 *
 * Sampled (temperature 0.8, seed 42) with a q8_0 key cache: `full` with N + M prints exactly
 * what `save` with N followed by `load` with M print, each in its own process.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autark.h"

static bool print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    return true;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL STATE full|save PROMPT N | %s MODEL STATE load M\n", argv[0], argv[0]);
        return 2;
    }
    const char *mode = argv[3];
    autark_model *model = NULL;
    autark_status st = autark_model_load(argv[1], NULL, &model);
    if (st != AUTARK_OK) {
        fprintf(stderr, "load failed (%d): %s\n", st, autark_last_error());
        return 1;
    }
    autark_session_params sp = autark_session_params_default();
    sp.temperature = 0.8f;
    sp.seed = 42;
    sp.n_ctx = 256;
    sp.n_threads = 1;
    sp.cache_type_k = AUTARK_CACHE_Q8_0;
    sp.cache_type_v = AUTARK_CACHE_F16;
    autark_session *s = NULL;
    if (strcmp(mode, "load") == 0) {
        st = autark_session_load(model, argv[2], &sp, &s);
        if (st == AUTARK_OK) st = autark_generate_continue(s, (uint32_t)strtoul(argv[4], NULL, 10), print_piece, NULL);
    } else if (argc > 5) {
        st = autark_session_new(model, &sp, &s);
        if (st == AUTARK_OK) st = autark_generate(s, argv[4], (uint32_t)strtoul(argv[5], NULL, 10), print_piece, NULL);
        if (st == AUTARK_OK && strcmp(mode, "save") == 0) st = autark_session_save(s, argv[2]);
    } else {
        st = AUTARK_ERR_INVALID_ARGUMENT;
    }
    if (st != AUTARK_OK) fprintf(stderr, "error (%d): %s\n", st, autark_last_error());
    autark_session_free(s);
    autark_model_free(model);
    return st == AUTARK_OK ? 0 : 1;
}
