/* The floor of the gateway's design for scripts/bench: the C hello (hello.c) plus the Redis calls
 * and the service call the gateway makes for the bench's update, made the gateway's way, the
 * same webhook reply and the same close (not lingering once the input was read to its end).
 * Nothing else: no decoding beyond finding the ids and the text with strstr, no routing, no log
 * line. What any responder of this design costs at least; the gateway's distance from it is its
 * own. Built with cc at bench time; never shipped.
 *
 * The gateway path (the bench's unknown command): the gateway's own `begin` script with its
 * keys and arguments over hiredis, the reply admitted in the same call.
 * The service path (FLOOR_SERVICE_URL set; the bench's plain text): `begin` claiming the
 * update and the user's new session, the service's request as the gateway writes it POSTed
 * with libcurl on one handle per thread kept set up between calls, the answer's text and state
 * found with strstr, then the gateway's `finish` script (the state written, the internal id's
 * record, the reply admitted), and the text as the webhook reply.
 *
 * FLOOR_SCRIPTS names a directory with the scripts' libraries, begin.lua and finish.lua
 * (gateway-microbench --script NAME prints them for an env file), FLOOR_REDIS_SOCKET Redis's
 * unix socket, THREADS the threads (8). A request whose calls fail or whose answers do not
 * match is answered 500, so scripts that no longer match these calls show as errors in the
 * bench's row. */
#include <curl/curl.h>
#include <fcgiapp.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include "threads.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char begin_function[64], finish_function[64];
static const char *socket_path, *service_url;

/* The number after `"name":` in body, or -1. */
static long long number_after(const char *body, const char *name) {
    const char *at = strstr(body, name);
    return at ? atoll(at + strlen(name)) : -1;
}

/* The JSON string's bytes after `"name":"` in text (escapes kept) copied into out, or -1. */
static int string_after(const char *text, const char *name, char *out, int size) {
    const char *at = strstr(text, name);
    if (!at) return -1;
    at += strlen(name);
    int length = 0;
    while (at[length] && at[length] != '"' && length < size - 2) length += at[length] == '\\' && at[length + 1] ? 2 : 1;
    if (length >= size || at[length] != '"') return -1;
    memcpy(out, at, length);
    out[length] = 0;
    return length;
}

/* The JSON object after `"name":` in text (no strings with braces in it) into out, or -1. */
static int object_after(const char *text, const char *name, char *out, int size) {
    const char *at = strstr(text, name);
    if (!at || at[strlen(name)] != '{') return -1;
    at += strlen(name);
    int depth = 0, length = 0;
    do {
        if (at[length] == '{') depth++;
        if (at[length] == '}') depth--;
        length++;
    } while (depth > 0 && at[length] && length < size - 1);
    if (depth != 0) return -1;
    memcpy(out, at, length);
    out[length] = 0;
    return length;
}

/* One call with its arguments (none holds a NUL); NULL when the connection failed. */
static redisReply *fcall(redisContext **redis, int argc, const char **argv) {
    size_t lengths[24];
    for (int i = 0; i < argc; i++) lengths[i] = strlen(argv[i]);
    redisReply *answer = redisCommandArgv(*redis, argc, argv, lengths);
    if (!answer) { /* the connection is gone: a new one for the next request */
        redisFree(*redis);
        *redis = redisConnectUnix(socket_path);
        if (!*redis || (*redis)->err) exit(1);
    }
    return answer;
}

struct answer_buffer {
    char bytes[8192];
    size_t length;
};

static size_t collect(char *data, size_t size, size_t count, void *context) {
    struct answer_buffer *answer = context;
    size_t bytes = size * count;
    if (answer->length + bytes >= sizeof answer->bytes) return 0; /* too long: the transfer fails */
    memcpy(answer->bytes + answer->length, data, bytes);
    answer->length += bytes;
    answer->bytes[answer->length] = 0;
    return bytes;
}

/* A subject's keys for a user and an update, as RedisStateStore writes them ("" the update's mark). */
static void subject_keys(char keys[][64], long long user, long long update, const char *const *suffixes, int count) {
    for (int i = 0; i < count; i++) {
        if (suffixes[i][0] == 0) snprintf(keys[i], 64, "{tg:%lld}:update:%lld", user, update);
        else snprintf(keys[i], 64, "{tg:%lld}%s", user, suffixes[i]);
    }
}

/* A sendMessage of text to the user's chat as the outbox stores it (a PendingSend), and as the
 * webhook reply carries it. */
static void stored_reply(char *out, int size, long long user, const char *token, const char *text) {
    snprintf(out, size, "v1 0 %lld sendMessage %s.0\n{\"chat_id\":%lld,\"text\":\"%s\"}", user, token, user, text);
}
static int webhook_reply(char *out, int size, long long user, const char *text) {
    return snprintf(out, size, "{\"method\":\"sendMessage\",\"chat_id\":%lld,\"text\":\"%s\"}", user, text);
}

/* `begin` with its six keys; the arguments after the token: flags, the update's id, a new
 * internal id, no replay, and the reply to admit. */
static redisReply *begin(redisContext **redis, long long user, long long update, const char *token, const char *flags, const char *internal,
                         const char *reply) {
    static const char *const suffixes[6] = {"", ":pacing", ":session", ":lease", ":queued", ":outbox"};
    char keys[6][64], id[24];
    subject_keys(keys, user, update, suffixes, 6);
    snprintf(id, sizeof id, "%lld", update);
    const char *argv[15] = {"FCALL", begin_function, "6", keys[0], keys[1], keys[2], keys[3], keys[4], keys[5], token, flags, id, internal, "", reply};
    return fcall(redis, 15, argv);
}

/* The gateway path: one `begin`, the reply admitted in it. Writes the webhook reply's JSON. */
static int gateway_path(redisContext **redis, const char *body, const char *token, char *json, int size) {
    long long update = number_after(body, "\"update_id\":"), user = number_after(body, "\"from\":{\"id\":");
    static const char text[] = "Sorry, I don't know that command. Send /help to see what I can do.";
    char reply[512];
    stored_reply(reply, sizeof reply, user, token, text);
    redisReply *answer = begin(redis, user, update, token, "s0p", "", reply);
    int failed = !answer || answer->type == REDIS_REPLY_ERROR;
    if (answer) freeReplyObject(answer);
    return failed ? -1 : webhook_reply(json, size, user, text);
}

/* The service path: `begin` claims the update and a new session, the service is called, and
 * `finish` writes its state and admits its text as the reply. Writes the webhook reply's JSON. */
static int service_path(redisContext **redis, CURL *curl, const char *body, const char *token, char *json, int size) {
    static __thread unsigned long long made;
    long long update = number_after(body, "\"update_id\":"), user = number_after(body, "\"from\":{\"id\":");
    char text[4096], first_name[256];
    if (string_after(body, "\"text\":\"", text, sizeof text) < 0 || string_after(body, "\"first_name\":\"", first_name, sizeof first_name) < 0) return -1;
    /* An internal id of the gateway's shape (36 characters), new for every update, as every
     * update of the bench is a new user's. */
    char internal[40];
    snprintf(internal, sizeof internal, "%08lx-0000-4000-8000-%012llx", (unsigned long)pthread_self() & 0xffffffff, ++made);
    redisReply *claimed = begin(redis, user, update, token, "s1p", internal, "");
    int ok = claimed && claimed->type == REDIS_REPLY_ARRAY && claimed->elements == 6 && claimed->element[1]->type == REDIS_REPLY_STRING &&
             claimed->element[1]->len < sizeof internal;
    if (ok) {
        memcpy(internal, claimed->element[1]->str, claimed->element[1]->len);
        internal[claimed->element[1]->len] = 0;
    }
    int created = ok && claimed->element[3]->type == REDIS_REPLY_INTEGER && claimed->element[3]->integer == 1;
    if (claimed) freeReplyObject(claimed);
    if (!ok) return -1;

    /* The service's request, the gateway's fields in its order. */
    char request[8192];
    int request_length = snprintf(request, sizeof request,
                                  "{\"request_id\":\"%s\",\"update_id\":%lld,\"update_type\":\"message\",\"user\":{\"id\":%lld,\"first_name\":\"%s\"},"
                                  "\"chat\":{\"id\":%lld,\"type\":\"private\"},\"session_available\":true,\"internal_user_id\":\"%s\","
                                  "\"new_session\":%s,\"conversation_state\":null,\"text\":\"%s\"}",
                                  token, update, user, first_name, user, internal, created ? "true" : "false", text);
    struct answer_buffer answer = {.length = 0};
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)request_length);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    long status = 0;
    if (curl_easy_perform(curl) != CURLE_OK || curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) return -1;
    char said[4096], state[1024];
    if (string_after(answer.bytes, "\"text\":\"", said, sizeof said) < 0 || object_after(answer.bytes, "\"state\":", state, sizeof state) < 0) return -1;

    static const char *const suffixes[6] = {"", ":session", ":lease", ":queued", ":outbox", ":pacing"};
    char keys[7][64], id[24], own[24], reply[8192];
    subject_keys(keys, user, update, suffixes, 6);
    snprintf(keys[6], sizeof keys[6], "tgi:{%s}", internal);
    snprintf(id, sizeof id, "%lld", update);
    snprintf(own, sizeof own, "%lld", user);
    stored_reply(reply, sizeof reply, user, token, said);
    /* The state set, the internal id kept, no replay, the reply, no advance of the outbox, and
     * the user the internal id's record names. */
    const char *finish[20] = {"FCALL", finish_function, "7", keys[0], keys[1], keys[2], keys[3], keys[4], keys[5], keys[6],
                              token, "p1p", "set", state, "", "", id, reply, "", own};
    redisReply *finished = fcall(redis, 20, finish);
    ok = finished && finished->type == REDIS_REPLY_STRING && finished->len == 3 && memcmp(finished->str, "now", 3) == 0;
    if (finished) freeReplyObject(finished);
    return ok ? webhook_reply(json, size, user, said) : -1;
}

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    static __thread char body[65536], json[16384];
    redisContext *redis = redisConnectUnix(socket_path);
    if (!redis || redis->err || FCGX_InitRequest(&request, 0, 0) != 0) {
        fprintf(stderr, "floor: no Redis at %s\n", socket_path);
        exit(1);
    }
    CURL *curl = NULL;
    struct curl_slist *headers = NULL;
    if (service_url) { /* set up once; each call sets only its body and where its answer goes */
        curl = curl_easy_init();
        headers = curl_slist_append(curl_slist_append(NULL, "Content-Type: application/json"), "Expect:");
        if (!curl || !headers) exit(1);
        curl_easy_setopt(curl, CURLOPT_URL, service_url);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    }
    unsigned long served = 0;
    while (FCGX_Accept_r(&request) >= 0) {
        int length = 0, got;
        while (length < (int)sizeof body - 1 && (got = FCGX_GetStr(body + length, sizeof body - 1 - length, request.in)) > 0) length += got;
        body[length] = 0;
        char token[32];
        snprintf(token, sizeof token, "sfloor%lx-%lu", (unsigned long)pthread_self(), ++served);
        int json_length = curl ? service_path(&redis, curl, body, token, json, sizeof json) : gateway_path(&redis, body, token, json, sizeof json);
        int failed = json_length < 0 || json_length >= (int)sizeof json;
        if (failed) json_length = snprintf(json, sizeof json, "{}");
        char head[128];
        int head_length = snprintf(head, sizeof head, "Status: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                                   failed ? "500 Internal Server Error" : "200 OK", json_length);
        FCGX_PutStr(head, head_length, request.out);
        FCGX_PutStr(json, json_length, request.out);
        if (FCGX_HasSeenEOF(request.in)) FCGX_Detach(&request);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

/* Loads directory/NAME.lua into Redis and keeps the function's name (the library's). */
static void load(redisContext *redis, const char *directory, const char *name, char *function) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.lua", directory, name);
    FILE *file = fopen(path, "r");
    char *script = calloc(1, 1 << 20);
    size_t size = file && script ? fread(script, 1, (1 << 20) - 1, file) : 0;
    if (file) fclose(file);
    /* REPLACE: the gateway may have loaded the same library already (it survives FLUSHALL). */
    const char *command[4] = {"FUNCTION", "LOAD", "REPLACE", script};
    size_t lengths[4] = {8, 4, 7, size};
    redisReply *loaded = size > 0 ? redisCommandArgv(redis, 4, command, lengths) : NULL;
    if (!loaded || loaded->type != REDIS_REPLY_STRING || loaded->len >= 64) {
        fprintf(stderr, "floor: FUNCTION LOAD of %s failed\n", path);
        exit(1);
    }
    memcpy(function, loaded->str, loaded->len);
    freeReplyObject(loaded);
    free(script);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *scripts = getenv("FLOOR_SCRIPTS");
    socket_path = getenv("FLOOR_REDIS_SOCKET");
    service_url = getenv("FLOOR_SERVICE_URL");
    if (!scripts || !socket_path) {
        fprintf(stderr, "floor: set FLOOR_SCRIPTS and FLOOR_REDIS_SOCKET\n");
        return 1;
    }
    if (service_url && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
    redisContext *redis = redisConnectUnix(socket_path);
    if (!redis || redis->err) {
        fprintf(stderr, "floor: no Redis at %s\n", socket_path);
        return 1;
    }
    load(redis, scripts, "begin", begin_function);
    load(redis, scripts, "finish", finish_function);
    redisFree(redis);

    return serve_on_threads(serve);
}
