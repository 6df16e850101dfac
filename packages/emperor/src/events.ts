import { EventEmitter } from 'node:events';

/** What happened to a vassal; panels read these from the control socket's event stream. */
export type EventName =
  | 'spawned' | 'ready' | 'exited' | 'reloaded' | 'restarted' | 'cursed' | 'invalid' | 'stopped' | 'backoff'
  | 'limits' | 'removed' | 'error' | 'oom' | 'daemon-spawned' | 'daemon-exited' | 'daemon-backoff' | 'cron' | 'adopted'
  | 'net-rules' | 'net-refused';

/** Events an operator should see (logged as warnings): something failed or was refused. */
export const WARNING_EVENTS: ReadonlySet<EventName> = new Set(['error', 'invalid', 'cursed', 'oom', 'backoff']);

/** One event: always a time, a vassal and a name; the rest depends on the event. */
export interface EmperorEvent {
  time: string;
  vassal: string;
  event: EventName;
  [key: string]: unknown;
}

/** The emperor's event bus: the control API streams it, the logger records it. */
export class EventBus extends EventEmitter<{ event: [EmperorEvent] }> {
  publish(vassal: string, event: EventName, detail: Record<string, unknown> = {}): EmperorEvent {
    const e: EmperorEvent = { time: new Date().toISOString(), vassal, event, ...detail };
    this.emit('event', e);
    return e;
  }
}
