/* `create`: the shim clones the jail init, puts it in its cgroups, waits for it, reports on the status fd. */
#pragma once
#include "spec.h"
__attribute__((noreturn)) void cmd_create(const struct create_spec *spec);
