/* The floor of the gateway path's design for scripts/bench: the C hello (hello.c) plus the one
 * Redis call the gateway makes for the bench's update, the gateway's own `begin` script with its
 * keys and arguments over hiredis, the same webhook reply and the same close (not lingering once
 * the input was read to its end). Nothing else: no decoding beyond finding the two ids, no
 * routing, no log line. What any responder of this design costs at least; the gateway's distance
 * from it is its own. Built with cc at bench time; never shipped.
 *
 * FLOOR_SCRIPT names a file with the script's library (gateway-microbench --begin-script prints
 * it for an env file), FLOOR_REDIS_SOCKET Redis's unix socket, THREADS the threads (8). A
 * request whose call fails is answered 500, so a script that no longer matches this call shows
 * as errors in the bench's row. */
#include <fcgiapp.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include "threads.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char function[64];
static const char *socket_path;

/* The number after `"name":` in body, or -1. */
static long long number_after(const char *body, const char *name) {
    const char *at = strstr(body, name);
    return at ? atoll(at + strlen(name)) : -1;
}

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    static __thread char body[65536];
    redisContext *redis = redisConnectUnix(socket_path);
    if (!redis || redis->err || FCGX_InitRequest(&request, 0, 0) != 0) {
        fprintf(stderr, "floor: no Redis at %s\n", socket_path);
        exit(1);
    }
    unsigned long served = 0;
    while (FCGX_Accept_r(&request) >= 0) {
        int length = 0, got;
        while (length < (int)sizeof body - 1 && (got = FCGX_GetStr(body + length, sizeof body - 1 - length, request.in)) > 0) length += got;
        body[length] = 0;
        long long update = number_after(body, "\"update_id\":"), user = number_after(body, "\"from\":{\"id\":");
        /* The keys, arguments and stored reply as RedisStateStore writes them for this update. */
        char keys[6][64], token[32], id[24], reply[512], text[] = "Sorry, I don't know that command. Send /help to see what I can do.";
        static const char *suffixes[6] = {"", ":pacing", ":session", ":lease", ":queued", ":outbox"};
        snprintf(keys[0], sizeof keys[0], "{tg:%lld}:update:%lld", user, update);
        for (int i = 1; i < 6; i++) snprintf(keys[i], sizeof keys[i], "{tg:%lld}%s", user, suffixes[i]);
        snprintf(token, sizeof token, "sfloor%lx-%lu", (unsigned long)pthread_self(), ++served);
        snprintf(id, sizeof id, "%lld", update);
        int reply_length = snprintf(reply, sizeof reply, "v1 0 %lld sendMessage %s.0\n{\"chat_id\":%lld,\"text\":\"%s\"}", user, token, user, text);
        const char *argv[15] = {"FCALL", function, "6", keys[0], keys[1], keys[2], keys[3], keys[4], keys[5], token, "s0p", id, "", "", reply};
        size_t lengths[15];
        for (int i = 0; i < 15; i++) lengths[i] = strlen(argv[i]);
        lengths[14] = (size_t)reply_length;
        redisReply *answer = redisCommandArgv(redis, 15, argv, lengths);
        int failed = !answer || answer->type == REDIS_REPLY_ERROR;
        if (answer) freeReplyObject(answer);
        if (!answer) { /* the connection is gone: a new one for the next request */
            redisFree(redis);
            redis = redisConnectUnix(socket_path);
            if (!redis || redis->err) exit(1);
        }
        char json[512], head[128];
        int json_length = failed ? snprintf(json, sizeof json, "{}")
                                 : snprintf(json, sizeof json, "{\"method\":\"sendMessage\",\"chat_id\":%lld,\"text\":\"%s\"}", user, text);
        int head_length = snprintf(head, sizeof head, "Status: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                                   failed ? "500 Internal Server Error" : "200 OK", json_length);
        FCGX_PutStr(head, head_length, request.out);
        FCGX_PutStr(json, json_length, request.out);
        if (FCGX_HasSeenEOF(request.in)) FCGX_Detach(&request);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *path = getenv("FLOOR_SCRIPT");
    socket_path = getenv("FLOOR_REDIS_SOCKET");
    FILE *file = path ? fopen(path, "r") : NULL;
    if (!file || !socket_path) {
        fprintf(stderr, "floor: set FLOOR_SCRIPT and FLOOR_REDIS_SOCKET\n");
        return 1;
    }
    char *script = calloc(1, 1 << 20);
    size_t size = fread(script, 1, (1 << 20) - 1, file);
    fclose(file);
    redisContext *redis = redisConnectUnix(socket_path);
    /* REPLACE: the gateway may have loaded the same library already (it survives FLUSHALL). */
    const char *load[4] = {"FUNCTION", "LOAD", "REPLACE", script};
    size_t lengths[4] = {8, 4, 7, size};
    redisReply *loaded = redis && !redis->err ? redisCommandArgv(redis, 4, load, lengths) : NULL;
    if (!loaded || loaded->type != REDIS_REPLY_STRING || loaded->len >= sizeof function) {
        fprintf(stderr, "floor: FUNCTION LOAD failed\n");
        return 1;
    }
    /* The library's name is its one function's. */
    memcpy(function, loaded->str, loaded->len);
    freeReplyObject(loaded);
    redisFree(redis);
    free(script);

    return serve_on_threads(serve);
}
