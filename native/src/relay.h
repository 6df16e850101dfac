/* The exec helper's parent loop: forwards signals, relays a pty, waits for the child. */
#pragma once
#include <sys/types.h>

/*
 * Returns the child's wait status. master is the jail pty's master fd, or -1 without a pty; notify is a
 * datagram socket where the child may send sd_notify messages ("READY=1" becomes a "ready" event), or -1.
 */
int relay_until_exit(pid_t child, int master, int notify);
