#ifndef CFASTCGI_SHIM_H
#define CFASTCGI_SHIM_H

// libfcgi's thread-safe request API (FCGX_*). The printf-style FCGX_FPrintF is
// variadic and not callable from Swift; the adapter writes with FCGX_PutStr.
#include <fcgiapp.h>

// epoll, which Swift's Glibc module leaves out: the workers' wait for a connection.
#include <sys/epoll.h>

#endif
