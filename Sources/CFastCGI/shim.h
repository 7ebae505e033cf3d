#ifndef CFASTCGI_SHIM_H
#define CFASTCGI_SHIM_H

// libfcgi's thread-safe request API (FCGX_*). The printf-style FCGX_FPrintF is
// variadic and not callable from Swift; the adapter writes with FCGX_PutStr.
#include <fcgiapp.h>

// epoll, which Swift's Glibc module leaves out: the workers' wait for a connection.
#include <sys/epoll.h>

#include <errno.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// Lowers the calling thread's priority by `steps` nice levels (at most to 19). Linux keeps a
// nice value per thread, addressed by its thread id, which Swift's Glibc module does not give
// (gettid needs _GNU_SOURCE). Returns 0, or -1 with errno set.
static inline int gateway_lower_thread_priority(int steps) {
    id_t thread = (id_t)syscall(SYS_gettid);
    errno = 0;
    int current = getpriority(PRIO_PROCESS, thread);
    if (current == -1 && errno != 0) return -1;
    int wanted = current + steps > 19 ? 19 : current + steps;
    return setpriority(PRIO_PROCESS, thread, wanted);
}

// Names the calling thread (at most 15 bytes kept), as `top -H` and /proc/PID/task/TID/comm
// show it.
static inline void gateway_name_thread(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
