/*
 * The status fd: one JSON object per line, the helper's only way of talking to the emperor.
 * Events: {"event":"ready",...}, {"event":"spawn",...}, {"event":"exit",...}, {"event":"error",...}.
 * packages/jail/src/protocol.ts is the one TypeScript module that knows them (and the requests).
 */
#pragma once
#include <stdbool.h>

/* -1 when there is none: events are then dropped (errors still go to stderr). */
void status_set_fd(int fd);
int status_fd(void);
/* Writes one line built from "key":value pairs; fmt is the inside of the object. */
void status_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* {"event":"error","step":...,"errno":N,"error":"ENAME","message":...} */
void status_error(const char *step, int err, const char *message);
/* A JSON string literal of s (quoted, escaped) in a static buffer; valid until the next call. */
const char *json_str(const char *s);
