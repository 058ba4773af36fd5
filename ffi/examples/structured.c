/* Structured output with the autark C API: a JSON Schema, a regex or tool calls.
 *
 *   gcc -Wall -Wextra -Werror structured.c -I<prefix>/include -L<prefix>/lib -lautark -o structured
 *   ./structured model.autark schema FILE "PROMPT" [N]   -- one JSON value valid under the schema
 *   ./structured model.autark regex RE "PROMPT" [N]      -- text matching the regex
 *   ./structured model.autark tools FILE "PROMPT" [N]    -- one call of a tool in FILE, as JSON
 *   ./structured model.autark tools-auto FILE "PROMPT" [N] -- a call as JSON, or a text reply
 *
 * Greedy (temperature 0), so the output equals `autark run --temp 0` with --json-schema,
 * --regex, or --chat --tools. Exit status: 0 done, 1 error, 3 the output is incomplete.
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

/* Collects a reply's text (tools-auto: printed when the reply is not a call). */
struct text {
    char buf[65536];
    size_t len;
};

static bool keep_piece(const char *piece, size_t len, void *user_data) {
    struct text *t = user_data;
    if (t->len + len >= sizeof t->buf) return false;
    memcpy(t->buf + t->len, piece, len);
    t->len += len;
    t->buf[t->len] = 0;
    return true;
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL schema|regex|tools ARG PROMPT [N]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[2];
    unsigned n = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 10) : 256;
    bool tools = strncmp(mode, "tools", 5) == 0;
    char *text = strcmp(mode, "regex") == 0 ? NULL : read_file(argv[3]);
    if (strcmp(mode, "regex") != 0 && !text) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 1;
    }

    autark_model *model = NULL;
    autark_session *session = NULL;
    autark_status st = autark_model_load(argv[1], NULL, &model);
    if (st == AUTARK_OK) {
        autark_session_params sp = autark_session_params_default();
        sp.temperature = 0.0f;
        sp.n_ctx = 1024;
        st = autark_session_new(model, &sp, &session);
    }
    if (st == AUTARK_OK && tools) {
        const char *roles[] = {"user"};
        const char *contents[] = {argv[4]};
        static struct text reply;
        st = strcmp(mode, "tools-auto") == 0
                 ? autark_chat_tools_choice(session, roles, contents, 1, text, AUTARK_TOOL_CHOICE_AUTO, n,
                                            keep_piece, &reply)
                 : autark_chat_tools(session, roles, contents, 1, text, n, NULL, NULL);
        if (st == AUTARK_OK) {
            size_t len = 0; /* ask for the size first: the usual buffer-too-small convention */
            st = autark_session_tool_calls(session, NULL, 0, &len);
            if (st == AUTARK_ERR_BUFFER_TOO_SMALL) {
                char *calls = malloc(len + 1);
                st = autark_session_tool_calls(session, calls, len + 1, &len);
                /* "[]": a text reply (tools-auto only). */
                if (st == AUTARK_OK) fputs(strcmp(calls, "[]") == 0 ? reply.buf : calls, stdout);
                free(calls);
            }
        }
    } else if (st == AUTARK_OK) {
        st = strcmp(mode, "schema") == 0
                 ? autark_session_set_constraint(session, AUTARK_CONSTRAINT_JSON_SCHEMA, text)
                 : autark_session_set_constraint(session, AUTARK_CONSTRAINT_REGEX, argv[3]);
        if (st == AUTARK_OK) st = autark_generate(session, argv[4], n, print_piece, NULL);
    }
    printf("\n");
    if (st != AUTARK_OK) fprintf(stderr, "error (%d): %s\n", st, autark_last_error());
    autark_session_free(session);
    autark_model_free(model);
    free(text);
    return st == AUTARK_OK ? 0 : st == AUTARK_ERR_INCOMPLETE_OUTPUT ? 3 : 1;
}
