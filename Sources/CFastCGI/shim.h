#ifndef CFASTCGI_SHIM_H
#define CFASTCGI_SHIM_H

// libfcgi's thread-safe request API (FCGX_*). The printf-style FCGX_FPrintF is
// variadic and not callable from Swift; the adapter writes with FCGX_PutStr.
#include <fcgiapp.h>

// epoll, which Swift's Glibc module leaves out: the workers' wait for a connection.
#include <sys/epoll.h>

#include <sys/prctl.h>

// Names the calling thread (at most 15 bytes kept), as `top -H` and /proc/PID/task/TID/comm
// show it.
static inline void gateway_name_thread(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
