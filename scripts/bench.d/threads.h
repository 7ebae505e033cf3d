/* The bench's C responders' one way to run (hello.c, floor.c): FCGX_Init, then THREADS (8; 1-64)
 * threads each running `serve` on the socket spawn-fcgi passes on fd 0, joined. */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdlib.h>

static int serve_on_threads(void *(*serve)(void *)) {
    const char *setting = getenv("THREADS");
    int threads = setting ? atoi(setting) : 8;
    if (threads < 1 || threads > 64) threads = 8;
    FCGX_Init();
    pthread_t ids[64];
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, serve, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}
