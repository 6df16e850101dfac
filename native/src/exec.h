/* `exec`: enters a running jail, drops every privilege and runs a command there; relays its exit. */
#pragma once
#include "spec.h"
__attribute__((noreturn)) void cmd_exec(const struct exec_spec *spec);
