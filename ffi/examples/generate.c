/* Minimal generation with the autark C API.
 *
 *   gcc -Wall -Wextra -Werror generate.c -I<prefix>/include -L<prefix>/lib -lautark -o generate
 *   ./generate model.autark "The capital of France is" 32
 *
 * Greedy (temperature 0), so the output equals `autark run --temp 0` for the same prompt.
 */
#include <stdio.h>
#include <stdlib.h>

#include "autark.h"

static bool print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true; /* false would stop generation */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL PROMPT [N]\n", argv[0]);
        return 2;
    }
    unsigned n = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 32;

    autark_model *model = NULL;
    autark_status st = autark_model_load(argv[1], NULL, &model);
    if (st != AUTARK_OK) {
        fprintf(stderr, "load failed (%d): %s\n", st, autark_last_error());
        return 1;
    }
    autark_session_params sp = autark_session_params_default();
    sp.temperature = 0.0f;
    sp.n_ctx = 512;
    autark_session *session = NULL;
    st = autark_session_new(model, &sp, &session);
    if (st == AUTARK_OK) {
        st = autark_generate(session, argv[2], n, print_piece, NULL);
    }
    if (st != AUTARK_OK) {
        fprintf(stderr, "\nerror (%d): %s\n", st, autark_last_error());
    }
    printf("\n");
    autark_session_free(session);
    autark_model_free(model);
    return st == AUTARK_OK ? 0 : 1;
}
