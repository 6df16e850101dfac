/* PID 1 of the jail: holds the namespaces and reaps every orphan until the shim kills it. */
#pragma once
__attribute__((noreturn)) void run_init(void);
