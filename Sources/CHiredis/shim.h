#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H

// The variadic redisCommand is not callable from Swift: the adapter uses redisCommandArgv.
#include <hiredis/hiredis.h>

#endif
