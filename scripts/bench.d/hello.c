/* The yardstick of scripts/bench: the least a libfcgi responder can do with a webhook request
 * (read the body, answer 200 with "{}"), run exactly like the gateway (under spawn-fcgi, the
 * socket on fd 0, THREADS threads in FCGX_Accept_r). Built with cc at bench time; never shipped. */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdlib.h>

#include "threads.h"

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    char body[65536];
    if (FCGX_InitRequest(&request, 0, 0) != 0) return NULL;
    while (FCGX_Accept_r(&request) >= 0) {
        while (FCGX_GetStr(body, sizeof body, request.in) > 0) {
        }
        static const char answer[] = "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        FCGX_PutStr(answer, sizeof answer - 1, request.out);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(void) {
    return serve_on_threads(serve);
}
