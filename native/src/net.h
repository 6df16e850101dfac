/* The jail's network namespace starts with only a down loopback: bring it up. */
#pragma once
void loopback_up(void);
