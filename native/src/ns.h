/* Namespaces: clone into new ones, enter a running jail's. */
#pragma once
#include <sys/types.h>

/* pidfd_open(2), checking that pid is the process that started at start (clock ticks): no pid reuse. */
int open_verified_pidfd(pid_t pid, unsigned long long start, const char *what);
/* The start time (field 22 of /proc/PID/stat) of a process, or 0 if it is gone. */
unsigned long long proc_start_time(pid_t pid);
/* setns(2) into every namespace in flags of the process behind pidfd. */
void enter_namespaces(int pidfd, int flags);
