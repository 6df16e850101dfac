/* The jail's file system: a read-only tmpfs root populated by the mount operations, then pivot_root. */
#pragma once
#include "spec.h"

/* Runs in the new mount namespace, as root: builds the root and switches to it. */
void build_root(const struct create_spec *spec);
